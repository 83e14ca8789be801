package framework

import (
	"context"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ControlPlaneNamespace is the namespace `mesh install` installs into (docs/architecture.md).
const ControlPlaneNamespace = "conduit"

// ControlPlaneDeployments are the Deployments of the control plane.
var ControlPlaneDeployments = []string{"conduit-identity", "conduit-destination", "conduit-injector"}

var installOnce struct {
	sync.Mutex
	done bool
}

// InstallMesh installs the mesh exactly as a user does, once per test binary:
//
//	mesh install --crds | kubectl apply -f -
//	mesh install        | kubectl apply -f -
//
// then waits for the control plane to roll out. The control plane's namespace is collected on
// the test's failure. It skips the test if the CLI has no install command yet. The mesh stays
// installed for the following tests.
func (f *Framework) InstallMesh(t testing.TB) {
	t.Helper()
	f.RequireMesh(t, "install")
	f.CollectOnFailure(t, ControlPlaneNamespace)
	installOnce.Lock()
	defer installOnce.Unlock()
	if installOnce.done {
		return
	}
	ctx := Context(t, 5*time.Minute)
	for _, args := range [][]string{{"install", "--crds"}, {"install"}} {
		r := f.RunMesh(ctx, args...)
		if r.Err != nil {
			t.Fatalf("e2e: installing the mesh: %v", r.Err)
		}
		if a := f.RunKubectl(ctx, r.Stdout, "apply", "--server-side", "--force-conflicts", "-f", "-"); a.Err != nil {
			t.Fatalf("e2e: mesh %v | kubectl apply -f -: %v", args, a.Err)
		}
	}
	f.WaitControlPlane(t, 5*time.Minute)
	installOnce.done = true
}

// WaitControlPlane waits for every Deployment of the control plane namespace to roll out.
func (f *Framework) WaitControlPlane(t testing.TB, timeout time.Duration) {
	t.Helper()
	list, err := f.Client.AppsV1().Deployments(ControlPlaneNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("e2e: control plane deployments: %v", err)
	}
	if len(list.Items) == 0 {
		t.Fatalf("e2e: no Deployment in namespace %s after mesh install", ControlPlaneNamespace)
	}
	for _, d := range list.Items {
		f.WaitRollout(t, ControlPlaneNamespace, "deployment/"+d.Name, timeout)
	}
}
