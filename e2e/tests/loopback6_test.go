//go:build e2e

package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// loopback6Apps: a meshed server whose HTTP echo listens on :8080 (for its
// readiness probe) and on [::1]:8081 only, and whose TCP echo listens on
// [::1]:9000 only, behind the Service "lo6"; the same server in a pod whose
// proxy does not serve IPv6 (config.conduit.dev/ipv6: "off"), behind
// "lo6-off"; and a meshed client.
func loopback6Apps(image string) string {
	args := []string{"-also-addrs", "[::1]:8081", "-tcp-addr", "[::1]:9000"}
	off := withPodAnnotations(echoDeployment("server-off", image, args), "server-off", `config.conduit.dev/ipv6: "off"`)
	svc := func(name, app string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %s}
spec:
  selector: {app: %s}
  ports: [{name: http6, port: 8081, targetPort: 8081}, {name: tcp6, port: 9000, targetPort: 9000}]
`, name, app)
	}
	return manifests(echoDeployment("server", image, args), svc("lo6", "server"), off, svc("lo6-off", "server-off"), sleeperPod("client", image))
}

// TestAppOnIPv6Loopback: an application in a meshed pod that listens on
// IPv6 loopback only ([::1], an IPv6-only socket) is reached through the
// mesh. The server's proxy forwards to 127.0.0.1:<port>, which refuses,
// and tries [::1]:<port> (its proxy serves IPv6, as in every pod of the
// dual-stack cluster): an HTTP request from a meshed client reaches the
// application from [::1] with the client's identity in conduit-client-id,
// and an opaque TCP connection gets its echo over mTLS. Before the
// fallback (stop 32; checked on the cluster with it disabled) the server's
// proxy gave up at the refusal: the client got a 502 (its proxy: the
// server's "refused the request unprocessed") and the TCP connection was
// closed without an echo, which is what the control pod whose proxy does
// not serve IPv6 still shows.
func TestAppOnIPv6Loopback(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	ns := meshedNamespace(t, f, "lo6")
	f.Apply(t, ns, loopback6Apps(f.Image("testapp")))
	server := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	off := f.WaitPodsReady(t, ns, "app=server-off", 1, 3*time.Minute)[0]
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)
	for _, p := range []corev1.Pod{server, off} {
		if !injected(&p) {
			t.Fatalf("pod %s has no proxy", p.Name)
		}
	}
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"

	t.Run("HTTP", func(t *testing.T) {
		var out string
		f.WaitFor(t, "an answer from the application on [::1]:8081", time.Minute, func(ctx context.Context) (bool, error) {
			o, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "get", "-n", "3", "-timeout", "5s", "http://lo6:8081/")
			if err != nil {
				return false, fmt.Errorf("testapp get: %w: %s", err, stderr)
			}
			out = o
			return true, nil
		})
		es := decodeEchoes(t, out)
		if len(es) != 3 {
			t.Fatalf("%d answers, want 3:\n%s", len(es), out)
		}
		for _, e := range es {
			if e.Pod != server.Name || !strings.HasPrefix(e.RemoteAddr, "[::1]:") {
				t.Errorf("answered by %s, to %s; want %s, to a client on [::1] (its proxy)", e.Pod, e.RemoteAddr, server.Name)
			}
			if got := e.Headers["Conduit-Client-Id"]; len(got) != 1 || got[0] != clientID {
				t.Errorf("the application saw conduit-client-id %q, want %s (mTLS between the proxies)", got, clientID)
			}
		}
	})

	t.Run("opaque TCP", func(t *testing.T) {
		opens := func() float64 {
			return proxyCounter(t, f, ns, server.Name, "tcp_open_total", `direction="inbound"`, `peer="src"`, `tls="true"`, `client_id="`+clientID+`"`)
		}
		before := opens()
		for range 3 {
			out := f.Exec(t, ns, "client", "client", "testapp", "tcp", "lo6:9000", "hello")
			if want := server.Name + " hello from ::1\n"; out != want {
				t.Fatalf("testapp tcp printed %q, want %q", out, want)
			}
		}
		if n := opens() - before; n < 3 {
			t.Errorf("the server's proxy counts %v new mTLS connections from %s, want at least 3", n, clientID)
		}
	})

	// Control: a proxy that does not serve IPv6 does not try [::1], so
	// the application is not reached (the behaviour before the fallback).
	// Without it, the answers above could come from some other path.
	t.Run("control: a proxy without IPv6 does not fall back", func(t *testing.T) {
		f.WaitEndpoints(t, ns, "lo6-off", 1, time.Minute)
		ctx := framework.Context(t, time.Minute)
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "get", "-timeout", "5s", "http://lo6-off:8081/")
		if err == nil || !strings.Contains(stderr, "status 502") || !strings.Contains(stderr, "refused") {
			t.Errorf("GET lo6-off:8081: %v, want a 502 naming the refused connection:\n%s%s", err, out, stderr)
		}
		out, stderr, err = f.ExecE(ctx, ns, "client", "client", nil, "testapp", "tcp", "lo6-off:9000", "hello")
		if err == nil {
			t.Errorf("testapp tcp lo6-off:9000 got %q, want no echo", out+stderr)
		}
	})
}
