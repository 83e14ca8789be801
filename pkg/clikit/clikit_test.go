package clikit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// TestKubeconfigErrors: a kubeconfig that cannot be loaded is named, with
// where it came from and the context; a $KUBECONFIG naming no file spoke of
// KUBERNETES_MASTER, and none of the errors named the file or the context.
func TestKubeconfigErrors(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "config")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: kind, context: {cluster: c, user: u}}]
current-context: kind
`), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name, env, flag, context string
		want                     string
	}{
		{name: "$KUBECONFIG names no file", env: missing,
			want: "kubeconfig " + missing + " ($KUBECONFIG) does not exist: set --kubeconfig or $KUBECONFIG to the kubeconfig of your cluster"},
		{name: "--kubeconfig names no file", env: kc, flag: missing,
			want: "kubeconfig " + missing + " (--kubeconfig) does not exist: set --kubeconfig or $KUBECONFIG to the kubeconfig of your cluster"},
		{name: "no such context", env: kc, context: "prod",
			want: "load kubeconfig " + kc + ` ($KUBECONFIG), context "prod": context "prod" does not exist ('kubectl config get-contexts' lists the contexts; set --kubeconfig or $KUBECONFIG, and --context if needed)`},
		{name: "default file missing", env: "",
			want: "kubeconfig " + clientcmd.RecommendedHomeFile + " (the default) does not exist: set --kubeconfig or $KUBECONFIG to the kubeconfig of your cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", tc.env)
			if _, err := os.Stat(clientcmd.RecommendedHomeFile); tc.env == "" && err == nil {
				t.Skip("this machine has a default kubeconfig")
			}
			t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a pod
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = tc.flag
			_, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: tc.context}).ClientConfig()
			if err != nil {
				err = KubeconfigError(rules, tc.context, err)
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v\nwant  %s", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "KUBERNETES_MASTER") {
				t.Errorf("speaks of KUBERNETES_MASTER: %v", err)
			}
		})
	}
}
