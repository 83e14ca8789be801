package clikit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
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

// TestUnreachable: only a call without an answer is the API server's
// unreachability; an answer (a Status) or the user's interrupt is not.
func TestUnreachable(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/api", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused", refused, true},
		{"wrapped", fmt.Errorf("viz: listing: %w", refused), true},
		{"answered", apierrors.NewNotFound(schema.GroupResource{Resource: "services"}, "metrics-api"), false},
		{"interrupted", &url.Error{Op: "Get", URL: "https://x", Err: context.Canceled}, false},
		{"nil", nil, false},
	} {
		if got := Unreachable(tc.err); got != tc.want {
			t.Errorf("%s: Unreachable = %v, want %v", tc.name, got, tc.want)
		}
	}
	err := APIServerError("https://127.0.0.1:6443", "kind-conduit", refused)
	if want := `cannot reach the Kubernetes API server https://127.0.0.1:6443 (kubeconfig context "kind-conduit"): Get`; !strings.HasPrefix(err.Error(), want) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err = %v, want %q... wrapping the cause", err, want)
	}
}

// TestQuietConnectionEnds: a connection's end reported by client-go's
// background goroutines is dropped, any other error reaches the handlers.
func TestQuietConnectionEnds(t *testing.T) {
	old := utilruntime.ErrorHandlers
	t.Cleanup(func() { utilruntime.ErrorHandlers = old })
	var got []string
	utilruntime.ErrorHandlers = []utilruntime.ErrorHandler{func(_ context.Context, err error, _ string, _ ...any) {
		got = append(got, err.Error())
	}}
	QuietConnectionEnds()
	for _, err := range []error{
		io.EOF,
		fmt.Errorf("copy: %w", net.ErrClosed),
		&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
		fmt.Errorf("write: %w", syscall.EPIPE),
		errors.New("an error that matters"),
	} {
		utilruntime.HandleError(err)
	}
	if len(got) != 1 || got[0] != "an error that matters" {
		t.Errorf("errors handled: %q, want only the one that matters", got)
	}
}
