package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kubeconfig writes a kubeconfig whose current context "kind-test" is the
// API server at server.
func kubeconfig(t *testing.T, server string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: kind-test, context: {cluster: c, user: u, namespace: emojivoto}}]
current-context: kind-test
`, server)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

// runKube runs `viz args...` against the cluster of the kubeconfig, as
// mesh-viz does (no fake API or tap).
func runKube(t *testing.T, kubeconfig string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := NewCommand(&Env{Out: &out, Err: &errb, In: strings.NewReader(""), Kube: KubeFlags{Kubeconfig: kubeconfig}})
	root.SetArgs(append([]string{"viz"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// TestUnreachableCluster: when the API server does not answer, the error
// says so and names the server and the context; it said "is viz installed?
// run 'mesh viz check'", which cannot tell either.
func TestUnreachableCluster(t *testing.T) {
	server := closedURL(t)
	kc := kubeconfig(t, server)
	want := fmt.Sprintf("viz: cannot reach the Kubernetes API server %s (kubeconfig context \"kind-test\"): ", server)
	for _, args := range [][]string{
		{"stat", "deploy"},
		{"stat", "deploy", "--viz-namespace", "conduit-viz"}, // no lookup: the metrics API call is the first
		{"edges", "deploy"},
		{"routes", "svc/web", "--viz-namespace", "viz-x"},
		{"dashboard", "--port", "0"},
		{"tap", "deploy/web"},
		{"top", "deploy/web", "-o", "json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, _, err := runKube(t, kc, args...)
			if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("err = %v\nwant %s...connection refused", err, want)
			}
			if err != nil && strings.Contains(err.Error(), "is viz installed") {
				t.Errorf("err suggests viz is not installed: %v", err)
			}
			if out != "" {
				t.Errorf("stdout %q", out)
			}
		})
	}
}

// TestAPIServerAnswers: when the API server answers but viz's metrics API
// is not there, the error points at viz, in the namespace found by its
// label (or given).
func TestAPIServerAnswers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		namespaces string // the namespaces labelled conduit.dev/extension=viz
		args       []string
		want       []string
	}{
		{"no endpoints", `"viz-x"`, []string{"stat", "deploy"},
			[]string{"service viz-x/metrics-api) answered 503", "is viz installed and ready? run 'mesh viz check'"}},
		{"not installed", ``, []string{"edges", "deploy"},
			[]string{`services "metrics-api" not found`, "is viz installed and ready? run 'mesh viz check'"}},
		{"explicit namespace", `"viz-x"`, []string{"routes", "svc/web", "--viz-namespace", "mine"},
			[]string{`services "metrics-api" not found`, "is viz installed"}},
		{"installed twice", `"viz-a", "viz-b"`, []string{"stat", "deploy"},
			[]string{"viz: 2 namespaces are labelled conduit.dev/extension=viz (viz-a, viz-b): viz is installed more than once: choose one with --viz-namespace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var items []string
			for _, n := range strings.Split(tc.namespaces, ", ") {
				if n != "" {
					items = append(items, fmt.Sprintf(`{"metadata": {"name": %s, "labels": {"conduit.dev/extension": "viz"}}}`, n))
				}
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				switch {
				case r.URL.Path == "/api/v1/namespaces" && r.URL.Query().Get("labelSelector") == "conduit.dev/extension=viz":
					fmt.Fprintf(w, `{"kind": "NamespaceList", "apiVersion": "v1", "items": [%s]}`, strings.Join(items, ","))
				case r.URL.Path == "/api/v1/namespaces/viz-x/services/http:metrics-api:8085/proxy/api/v1/stat":
					w.Header().Set("Content-Type", "text/plain")
					w.WriteHeader(http.StatusServiceUnavailable)
					fmt.Fprint(w, `no endpoints available for service "metrics-api"`)
				default:
					w.WriteHeader(http.StatusNotFound)
					fmt.Fprint(w, `{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "services \"metrics-api\" not found", "reason": "NotFound", "code": 404}`)
				}
			}))
			defer srv.Close()
			_, _, err := runKube(t, kubeconfig(t, srv.URL), tc.args...)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want %q", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "cannot reach") {
				t.Errorf("err says the API server cannot be reached: %v", err)
			}
		})
	}
}
