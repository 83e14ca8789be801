package framework

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ControlPlaneNamespace is the namespace `mesh install` installs into (docs/architecture.md).
const ControlPlaneNamespace = "conduit"

// RunAnnotation on the control plane namespace names the e2e run (E2E_RUN_ID) that installed
// it, so that the test packages of one `make e2e` share one installation.
const RunAnnotation = "e2e.conduit.dev/run"

// ControlPlaneDeployments are the Deployments of the control plane.
var ControlPlaneDeployments = []string{"conduit-identity", "conduit-destination", "conduit-injector"}

var installOnce struct {
	sync.Mutex
	done bool
}

// InstallMesh installs the mesh exactly as a user does, once per run (E2E_RUN_ID):
//
//	mesh install --crds --registry R --tag T | kubectl apply -f -
//	mesh install        --registry R --tag T | kubectl apply -f -
//
// with the images of this build (E2E_REGISTRY, E2E_TAG), then waits for every Deployment of
// the control plane to roll out. The local cluster keeps its state across restarts, so an
// installation left by an earlier run (another E2E_RUN_ID) is first removed (mesh uninstall --force | kubectl
// delete -f -): the tests always run against the control plane of this build. The control
// plane's namespace is collected on the test's failure. Test namespaces an earlier run left are
// deleted first. The test is skipped if the CLI has no
// install command yet. The mesh stays installed for the following tests.
func (f *Framework) InstallMesh(t testing.TB) {
	t.Helper()
	f.RequireMesh(t, "install")
	f.CollectOnFailure(t, ControlPlaneNamespace)
	installOnce.Lock()
	defer installOnce.Unlock()
	if installOnce.done {
		return
	}
	f.removeEarlierNamespaces(t)
	ctx := Context(t, 10*time.Minute)
	if ns, err := f.Client.CoreV1().Namespaces().Get(ctx, ControlPlaneNamespace, metav1.GetOptions{}); err == nil {
		if ns.Annotations[RunAnnotation] == f.RunID && ns.DeletionTimestamp == nil {
			// Installed by another test package of this same run (make e2e): keep it.
			f.WaitControlPlane(t, 5*time.Minute)
			installOnce.done = true
			return
		}
		t.Logf("e2e: removing the control plane left by an earlier run")
		f.UninstallMesh(t)
	}
	image := []string{"--registry", f.Registry, "--tag", f.Tag}
	for _, args := range [][]string{append([]string{"install", "--crds"}, image...), append([]string{"install"}, image...)} {
		r := f.RunMesh(ctx, args...)
		if r.Err != nil {
			t.Fatalf("e2e: installing the mesh: %v", r.Err)
		}
		if a := f.RunKubectl(ctx, r.Stdout, "apply", "-f", "-"); a.Err != nil {
			t.Fatalf("e2e: mesh %v | kubectl apply -f -: %v", args, a.Err)
		}
		// mesh install refuses to run until the API server serves the CRDs' group.
		if args[1] == "--crds" {
			if w := f.RunKubectl(ctx, r.Stdout, "wait", "--for=condition=Established", "--timeout=60s", "-f", "-"); w.Err != nil {
				t.Fatalf("e2e: waiting for the CRDs to be established: %v", w.Err)
			}
		}
	}
	f.WaitControlPlane(t, 5*time.Minute)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, RunAnnotation, f.RunID)
	if _, err := f.Client.CoreV1().Namespaces().Patch(ctx, ControlPlaneNamespace, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("e2e: marking the control plane namespace: %v", err)
	}
	installOnce.done = true
}

// UninstallMesh removes the mesh as a user does (mesh uninstall --force | kubectl delete -f -)
// and waits until the control plane namespace is gone.
func (f *Framework) UninstallMesh(t testing.TB) {
	t.Helper()
	ctx := Context(t, 5*time.Minute)
	r := f.RunMesh(ctx, "uninstall", "--force")
	if r.Err != nil {
		t.Fatalf("e2e: uninstalling the mesh: %v", r.Err)
	}
	if d := f.RunKubectl(ctx, r.Stdout, "delete", "--ignore-not-found", "--wait=false", "-f", "-"); d.Err != nil {
		t.Fatalf("e2e: mesh uninstall | kubectl delete -f -: %v", d.Err)
	}
	f.WaitFor(t, "namespace "+ControlPlaneNamespace+" deleted", 3*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := f.Client.CoreV1().Namespaces().Get(ctx, ControlPlaneNamespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	installOnce.done = false
}

// UpgradeMesh applies `mesh upgrade args...` as a user would (piped to
// kubectl apply, server-side as the install is) and waits for the control
// plane's rollout. A test that changes a setting for the whole cluster
// restores it at cleanup with another UpgradeMesh.
func (f *Framework) UpgradeMesh(t testing.TB, args ...string) {
	t.Helper()
	out := f.MeshCmd(t, append([]string{"upgrade"}, args...)...)
	f.KubectlCmd(t, out, "apply", "--server-side", "--force-conflicts", "-f", "-")
	f.WaitControlPlane(t, 3*time.Minute)
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

// StopControllers scales the named control plane components ("identity",
// "destination", ...) to zero replicas and waits until their pods are gone.
// The returned function scales each back to the replicas it had and waits
// for the control plane's rollout; it runs at cleanup if the test has not
// called it.
func (f *Framework) StopControllers(t testing.TB, names ...string) (restore func()) {
	t.Helper()
	deploys := f.Client.AppsV1().Deployments(ControlPlaneNamespace)
	scale := func(name string, n int32) {
		t.Helper()
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
		f.KubectlCmd(t, "", "-n", ControlPlaneNamespace, "patch", "deployment", "conduit-"+name, "--type=merge", "-p", patch)
	}
	replicas := map[string]int32{}
	for _, name := range names {
		d, err := deploys.Get(context.Background(), "conduit-"+name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("e2e: stop conduit-%s: %v", name, err)
		}
		replicas[name] = 1
		if d.Spec.Replicas != nil {
			replicas[name] = *d.Spec.Replicas
		}
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			for _, name := range names {
				scale(name, replicas[name])
			}
			f.WaitControlPlane(t, 3*time.Minute)
		})
	}
	t.Cleanup(restore)
	for _, name := range names {
		scale(name, 0)
	}
	for _, name := range names {
		sel := "conduit.dev/control-plane-component=" + name
		f.WaitFor(t, "conduit-"+name+"'s pods gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
			pods, err := f.Client.CoreV1().Pods(ControlPlaneNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				return false, err
			}
			if n := len(pods.Items); n > 0 {
				return false, fmt.Errorf("%d pods left", n)
			}
			return true, nil
		})
	}
	return restore
}

// ProxyEnv returns the value of the environment variable name in pod p's
// conduit-proxy container (a native sidecar or a regular container), and
// whether it is set.
func ProxyEnv(p *corev1.Pod, name string) (string, bool) {
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		if c.Name != "conduit-proxy" {
			continue
		}
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value, true
			}
		}
	}
	return "", false
}
