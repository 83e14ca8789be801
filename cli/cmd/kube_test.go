package cmd

import (
	"os"
	"path/filepath"
	"testing"
)

// TestKubeconfigError: a kubeconfig that cannot be loaded is named, with
// where it came from (pkg/clikit's TestKubeconfigErrors has every case).
func TestKubeconfigError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := (&Options{Kubeconfig: missing}).RESTConfig()
	want := "kubernetes: kubeconfig " + missing + " (--kubeconfig) does not exist: set --kubeconfig or $KUBECONFIG to the kubeconfig of your cluster"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant  %s", err, want)
	}
}

// TestKubeBuiltOnce: a command that asks for the clients twice (diagnostics
// endpoints does: the port-forward, then the cluster networks) gets the
// same clients, built from the kubeconfig once.
func TestKubeBuiltOnce(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "config")
	const cfg = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: web}}]
current-context: x
`
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &Options{Kubeconfig: kubeconfig}
	first, err := o.Kube()
	if err != nil {
		t.Fatal(err)
	}
	second, err := o.Kube()
	if err != nil {
		t.Fatal(err)
	}
	if first != second || first.Client != second.Client {
		t.Errorf("Kube built the clients again: %p, then %p", first, second)
	}
	if first.Namespace != "web" || first.Config.Host != "https://127.0.0.1:1" {
		t.Errorf("Kube = namespace %q, host %q; want web, https://127.0.0.1:1", first.Namespace, first.Config.Host)
	}
}
