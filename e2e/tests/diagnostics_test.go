//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// TestProxyLogLevel: mesh diagnostics proxy-log-level reads and changes the
// log level of a running proxy through a real port-forward (which reaches
// the admin port from the pod's loopback, as the proxy requires for a
// change), the proxy logs the change, a bad level is refused, and the proxy
// is not restarted. The proxy commands also take a workload (deploy/NAME)
// and act on each of its pods.
func TestProxyLogLevel(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.RequireMesh(t, "diagnostics", "proxy-log-level")
	ns := meshedNamespace(t, f, "loglevel")
	f.Apply(t, ns, manifests(sleeperPod("client", f.Image("testapp")),
		strings.Replace(echoDeployment("server", f.Image("testapp"), nil), "replicas: 1", "replicas: 2", 1)))
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

	t.Run("of a workload", func(t *testing.T) { proxyCommandsOfAWorkload(t, f, ns) })
}

// proxyCommandsOfAWorkload: proxy-log-level, proxy-metrics and identity
// given deploy/server act on each of its two pods, by name.
func proxyCommandsOfAWorkload(t *testing.T, f *framework.Framework, ns string) {
	var pods []string
	for _, p := range f.WaitPodsReady(t, ns, "app=server", 2, 3*time.Minute) {
		pods = append(pods, p.Name)
	}
	slices.Sort(pods)

	out := f.MeshCmd(t, "diagnostics", "proxy-log-level", "-n", ns, "deploy/server", "warn")
	if want := ns + "/" + pods[0] + ": warn\n" + ns + "/" + pods[1] + ": warn\n"; out != want {
		t.Errorf("proxy-log-level deploy/server warn: %q, want %q", out, want)
	}
	for _, pod := range pods {
		if got := strings.TrimSpace(f.MeshCmd(t, "diagnostics", "proxy-log-level", "-n", ns, pod)); got != "warn" {
			t.Errorf("%s: level %q after the workload's change, want warn", pod, got)
		}
	}

	out = f.MeshCmd(t, "diagnostics", "proxy-metrics", "-n", ns, "deploy/server")
	for i, pod := range pods {
		head := fmt.Sprintf("# POD %s/%s (%d of 2)\n#\n", ns, pod, i+1)
		_, rest, ok := strings.Cut(out, head)
		if !ok {
			t.Errorf("proxy-metrics deploy/server has no section %q:\n%.2000s", head, out)
			continue
		}
		section, _, _ := strings.Cut(rest, "\n#\n# POD ")
		if !strings.Contains(section, "identity_cert_expiration_timestamp_seconds") {
			t.Errorf("proxy-metrics deploy/server: the section of %s has no proxy metrics:\n%.2000s", pod, section)
		}
	}

	var reports []struct {
		Pod      string   `json:"pod"`
		DNSNames []string `json:"dnsNames"`
		Trusted  bool     `json:"trusted"`
	}
	out = f.MeshCmd(t, "identity", "-n", ns, "deploy/server", "-o", "json")
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("identity deploy/server -o json: %v\n%s", err, out)
	}
	id := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	if len(reports) != 2 {
		t.Fatalf("identity deploy/server: %d reports, want 2:\n%s", len(reports), out)
	}
	for i, r := range reports {
		if r.Pod != ns+"/"+pods[i] || !r.Trusted || len(r.DNSNames) != 1 || r.DNSNames[0] != id {
			t.Errorf("identity deploy/server, report %d: %+v; want %s/%s, trusted, %s", i, r, ns, pods[i], id)
		}
	}

	r := f.RunMesh(framework.Context(t, time.Minute), "identity", "-n", ns, "svc/server")
	if r.Err == nil || !strings.Contains(r.Stderr, `unknown resource type "svc" (accepted: pod, deploy, sts, ds, rs, job)`) {
		t.Errorf("identity svc/server: %v, stderr %q; want the accepted types", r.Err, r.Stderr)
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
