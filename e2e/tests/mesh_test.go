//go:build e2e

package tests

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// TestMeshInstall installs the mesh with the built CLI, as a user does, and checks that the
// control plane runs. It skips while `mesh install` does not exist yet.
func TestMeshInstall(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	ctx := framework.Context(t, time.Minute)
	for _, name := range framework.ControlPlaneDeployments {
		if _, err := f.Client.AppsV1().Deployments(framework.ControlPlaneNamespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("control plane deployment %s: %v", name, err)
		}
	}
	f.WaitPodsReady(t, framework.ControlPlaneNamespace, "conduit.dev/control-plane-component", 3, 3*time.Minute)
}
