//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// TestProxyLogLevel: mesh diagnostics proxy-log-level reads and changes the
// log level of a running proxy through a real port-forward (which reaches
// the admin port from the pod's loopback, as the proxy requires for a
// change), the proxy logs the change, a bad level is refused, and the proxy
// is not restarted.
func TestProxyLogLevel(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.RequireMesh(t, "diagnostics", "proxy-log-level")
	ns := meshedNamespace(t, f, "loglevel")
	f.Apply(t, ns, sleeperPod("client", f.Image("testapp")))
	pod := f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)[0]

	level := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(f.MeshCmd(t, append([]string{"diagnostics", "proxy-log-level", "-n", ns, "client"}, args...)...))
	}
	if got := level(); got != "info" {
		t.Fatalf("the proxy's level: %q, want info (the default)", got)
	}
	if got := level("debug"); got != "debug" {
		t.Fatalf("set to debug: %q", got)
	}
	if got := level(); got != "debug" {
		t.Fatalf("after the change, the proxy's level: %q, want debug", got)
	}
	r := f.RunMesh(framework.Context(t, time.Minute), "diagnostics", "proxy-log-level", "-n", ns, "client", "loud")
	if r.Err == nil || !strings.Contains(r.Stderr, `invalid level "loud" (accepted: debug, info, warn, error)`) {
		t.Fatalf("a bad level: %v, stderr %q", r.Err, r.Stderr)
	}
	if got := level("info"); got != "info" {
		t.Fatalf("back to info: %q", got)
	}
	logs := f.KubectlCmd(t, "", "logs", "-n", ns, "client", "-c", "conduit-proxy")
	for _, want := range []string{`"msg":"log level changed","component":"proxy","sub":"admin","from":"info","to":"debug"`, `"from":"debug","to":"info"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the proxy's log lacks %s:\n%s", want, logs)
		}
	}
	after := f.WaitPodsReady(t, ns, "app=client", 1, time.Minute)[0]
	for i, s := range after.Status.InitContainerStatuses {
		if s.RestartCount != pod.Status.InitContainerStatuses[i].RestartCount {
			t.Errorf("%s restarted: %d -> %d", s.Name, pod.Status.InitContainerStatuses[i].RestartCount, s.RestartCount)
		}
	}
}

// TestProxyAccessLog: with config.conduit.dev/access-log: json on the
// namespace, both proxies of a request write its line: the client's
// outbound one with the server's identity, the server's inbound one with the
// client's, each with the method, path and status.
func TestProxyAccessLog(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	ns := meshedNamespace(t, f, "accesslog")
	f.KubectlCmd(t, "", "annotate", "namespace", ns, "config.conduit.dev/access-log=json")
	f.Apply(t, ns, manifests(echoDeployment("server", f.Image("testapp"), nil),
		httpService("server"),
		sleeperPod("client", f.Image("testapp"))))
	server := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)

	id := func(sa string) string {
		return sa + "." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	}
	// Until discovery knows the Service, the client's proxy forwards without mTLS.
	f.WaitFor(t, "the server through both proxies with mTLS", 2*time.Minute, func(ctx context.Context) (bool, error) {
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "get", "http://server:8080/warm")
		if err != nil {
			return false, fmt.Errorf("testapp get: %w: %s", err, stderr)
		}
		return strings.Contains(out, id("default")), nil
	})
	f.Exec(t, ns, "client", "client", "testapp", "get", "http://server:8080/logged?x=1")

	line := func(pod string) map[string]any {
		t.Helper()
		var found map[string]any
		f.WaitFor(t, pod+"'s proxy logs the request", 30*time.Second, func(ctx context.Context) (bool, error) {
			r := f.RunKubectl(ctx, "", "logs", "-n", ns, pod, "-c", "conduit-proxy")
			if r.Err != nil {
				return false, fmt.Errorf("kubectl logs: %w: %s", r.Err, r.Stderr)
			}
			for _, l := range strings.Split(r.Stdout, "\n") {
				if !strings.Contains(l, `"msg":"access"`) || !strings.Contains(l, `"/logged"`) {
					continue
				}
				if err := json.Unmarshal([]byte(l), &found); err != nil {
					return false, fmt.Errorf("not JSON: %q", l)
				}
				return true, nil
			}
			return false, fmt.Errorf("no access line for /logged yet")
		})
		return found
	}
	for pod, want := range map[string]map[string]any{
		"client":    {"direction": "outbound", "server_id": id("default"), "authority": "server." + ns + ".svc.cluster.local:8080"},
		server.Name: {"direction": "inbound", "client_id": id("default")},
	} {
		l := line(pod)
		want["method"], want["status"], want["tls"], want["log"] = "GET", 200.0, true, "access"
		for k, v := range want {
			if l[k] != v {
				t.Errorf("%s's access line: %s = %v, want %v (%v)", pod, k, l[k], v, l)
			}
		}
		t.Logf("%s: %v", pod, l)
	}
}
