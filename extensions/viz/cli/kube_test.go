package cli

import (
	"path/filepath"
	"testing"
)

// TestKubeconfigError: a kubeconfig that cannot be loaded is named, with
// where it came from (pkg/clikit's TestKubeconfigErrors has every case).
func TestKubeconfigError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := Connect(KubeFlags{Kubeconfig: missing})
	want := "viz: kubeconfig " + missing + " (--kubeconfig) does not exist: set --kubeconfig or $KUBECONFIG to the kubeconfig of your cluster"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant  %s", err, want)
	}
}
