//go:build e2e

package tests

import (
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
