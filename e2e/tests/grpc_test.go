//go:build e2e

package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// grpcApps is a meshed gRPC echo server behind a Service and a meshed
// client pod (testapp serve -grpc-addr, testapp grpc).
func grpcApps(image string) string {
	return manifests(
		echoDeployment("grpc-server", image, []string{"-grpc-addr", ":9090"}, "grpc:9090"),
		`apiVersion: v1
kind: Service
metadata: {name: grpc-server}
spec:
  selector: {app: grpc-server}
  ports: [{name: grpc, port: 9090, targetPort: grpc}]
`,
		sleeperPod("client", image))
}

// TestGRPCThroughTheMesh: a meshed client calls a meshed gRPC server through
// both proxies (their HTTP/2 fast path, mTLS between them): a full-duplex
// stream of 50 messages, each echoed back before the next is sent, with its
// trailer, and a unary call's error status. The server sees the client's
// identity in conduit-client-id, and both proxies count the calls as TLS
// requests with gRPC classification. An unmeshed client gets the same
// answers, error status included. A call the client cancels (no
// deadline) ends in the server application. Then a stream held open with nothing
// on it, on a channel with keepalive, outlives the proxies' and the
// client's PINGs.
func TestGRPCThroughTheMesh(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, "grpc")
	plain := f.NewNamespace(t, "grpc-plain", nil)
	f.Apply(t, ns, grpcApps(f.Image("testapp")))
	f.Apply(t, plain, sleeperPod("plain", f.Image("testapp")))
	server := f.WaitPodsReady(t, ns, "app=grpc-server", 1, 3*time.Minute)[0]
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)
	f.WaitPodsReady(t, plain, "app=plain", 1, 2*time.Minute)

	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	want := fmt.Sprintf("50 ok pod=%s client-id=%s", server.Name, clientID)
	// Until discovery knows the new Service, the client proxy forwards to
	// the original destination without mTLS (no client-id): wait for it.
	var last string
	f.WaitFor(t, "a full-duplex gRPC stream through both proxies with mTLS", 2*time.Minute, func(ctx context.Context) (bool, error) {
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil,
			"testapp", "grpc", "-n", "50", "-size", "20000", "-timeout", "30s", "grpc-server:9090")
		last = strings.TrimSpace(out)
		if err != nil {
			return false, fmt.Errorf("testapp grpc: %w: %s %s", err, out, stderr)
		}
		if last != want {
			return false, fmt.Errorf("testapp grpc printed %q, want %q", last, want)
		}
		return true, nil
	})
	t.Logf("testapp grpc: %s", last)

	// Each proxy counts the calls: over TLS, with the peer's identity.
	authority := `authority="grpc-server.` + ns + `.svc.cluster.local:9090"`
	for _, c := range []struct {
		pod    string
		labels []string
	}{
		{"client", []string{`direction="outbound"`, authority, `tls="true"`}},
		{server.Name, []string{`direction="inbound"`, `tls="true"`, `client_id="` + clientID + `"`}},
	} {
		// At least the stream and the unary call of the successful run.
		if n := proxyCounter(t, f, ns, c.pod, "request_total", c.labels...); n < 2 {
			t.Errorf("%s's proxy counts %v requests matching %v, want at least 2", c.pod, n, c.labels)
		}
	}

	// An unmeshed client straight to the server's proxy (plaintext h2c):
	// the same calls, the unary error status among them, with no
	// client-id. (The split trailers-only answer that direct TLS callers
	// got is TestCertifyRefusalsThroughTheProxy's: this path did not show
	// it, checked on the cluster without the fix.)
	f.WaitEndpoints(t, ns, "grpc-server", 1, time.Minute)
	wantPlain := fmt.Sprintf("5 ok pod=%s client-id=", server.Name)
	if out, stderr, err := f.ExecE(framework.Context(t, time.Minute), plain, "plain", "plain", nil,
		"testapp", "grpc", "-n", "5", "-timeout", "30s", "grpc-server."+ns+".svc.cluster.local:9090"); err != nil || strings.TrimSpace(out) != wantPlain {
		t.Errorf("an unmeshed gRPC client: %v: %q %s, want %q", err, out, stderr, wantPlain)
	}

	// A call its client cancels ends in the server application too: the
	// client's RST_STREAM crosses both proxies. The call has no deadline
	// (no grpc-timeout), so nothing else could end it before its 2 minute
	// hold; the application counts it in /abandoned (read from the server
	// pod's own loopback, past its proxy).
	abandoned := func(ctx context.Context) (string, error) {
		out, stderr, err := f.ExecE(ctx, ns, server.Name, "server", nil, "testapp", "get", "-timeout", "5s", "http://127.0.0.1:8080/abandoned")
		if err != nil {
			return "", fmt.Errorf("testapp get /abandoned: %w: %s", err, stderr)
		}
		return strings.TrimSpace(out), nil
	}
	if n, err := abandoned(framework.Context(t, time.Minute)); err != nil || n != "0" {
		t.Fatalf("/abandoned before any cancellation: %q %v, want 0", n, err)
	}
	start := time.Now()
	if out, stderr, err := f.ExecE(framework.Context(t, time.Minute), ns, "client", "client", nil,
		"testapp", "grpc", "-hold", "2m", "-cancel-after", "2s", "grpc-server:9090"); err != nil {
		t.Fatalf("testapp grpc -cancel-after 2s: %v: %s %s", err, out, stderr)
	}
	f.WaitFor(t, "the cancelled call to end in the server application", 20*time.Second, func(ctx context.Context) (bool, error) {
		n, err := abandoned(ctx)
		if err != nil {
			return false, err
		}
		if n != "1" {
			return false, fmt.Errorf("/abandoned says %q, want 1", n)
		}
		return true, nil
	})
	t.Logf("a gRPC call cancelled after 2s ended in the server application %v after it was made", time.Since(start).Round(100*time.Millisecond))

	// A stream that stays open with nothing on it, as a watch does. The
	// client's grpc-go keepalive PINGs its proxy every 10 s and gives the
	// connection up if an ACK takes 2 s; the server proxy checks the
	// stream's upstream connection after 15 s of quiet; a grpc-go server
	// with its default policy counts a PING less than 5 minutes after the
	// previous one, with no data sent between, as a strike, and closes the
	// connection (GOAWAY "too_many_pings") at the third.
	// The channel must stay READY and the stream must still echo after
	// quiet longer than four such checks.
	const quiet = 95 * time.Second
	out, stderr, err := f.ExecE(framework.Context(t, quiet+time.Minute), ns, "client", "client", nil,
		"testapp", "grpc", "-n", "1", "-keepalive", "10s", "-quiet", quiet.String(), "-timeout", (quiet + 30*time.Second).String(), "grpc-server:9090")
	if err != nil {
		t.Fatalf("a gRPC stream quiet for %v through both proxies: %v: %s %s", quiet, err, out, stderr)
	}
	if !strings.Contains(out, "quiet "+quiet.String()+" ok") {
		t.Fatalf("testapp grpc -quiet printed %q", out)
	}
	t.Logf("testapp grpc -quiet: %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "))
}
