//go:build e2e

package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// TestWebSocketThroughTheMesh: WebSockets (an HTTP/1.1 Upgrade) from meshed
// clients to a meshed server, through both proxies with mTLS: echoes, the
// client's identity at the server, from a client on the default transport
// and from one whose proxy sends HTTP/1.1 between the proxies; an AF_PACKET
// capture sees none of their messages in clear on the pod network (it sees
// an unmeshed client's, the control). Then the server pod is deleted while
// both hold a WebSocket open: its application closes them cleanly (1001,
// going away) 2 s after SIGTERM, and the clients must get that close frame.
// The server's proxy is a regular container (mesh inject --manual
// --sidecar-mode regular, as on Kubernetes before 1.29), so it gets SIGTERM
// with the application. Its wait for the application to exit is off
// (config.conduit.dev/wait-for-app-exit: 0s), so that the drain alone must
// keep the WebSockets: a proxy that finished its drain without waiting for
// switched connections exited at once, and the clients saw their WebSockets
// cut without a close frame (1006).
func TestWebSocketThroughTheMesh(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, "ws")

	server := servePod("ws-server", f.Image("testapp"), 20, "config.conduit.dev/wait-for-app-exit: 0s", "-drain", "2s")
	file := filepath.Join(t.TempDir(), "ws-server.yaml")
	if err := os.WriteFile(file, []byte(server), 0o644); err != nil {
		t.Fatal(err)
	}
	injected := f.MeshCmd(t, "inject", "--manual", "--sidecar-mode", "regular", "-n", ns, file)
	f.Apply(t, ns, manifests(injected,
		httpService("ws-server"),
		sleeperPod("client", f.Image("testapp")),
		sleeperPod("client-h1", f.Image("testapp"), `config.conduit.dev/proxy-http1-transport: http1`),
		sleeperPod("plain", f.Image("testapp"), `conduit.dev/inject: disabled`)))
	pod := f.WaitPodsReady(t, ns, "app=ws-server", 1, 3*time.Minute)[0]
	regular := false
	for _, c := range pod.Spec.Containers {
		regular = regular || c.Name == "conduit-proxy"
	}
	if !regular {
		t.Fatalf("ws-server's proxy is not a regular container: containers %v", pod.Spec.Containers)
	}
	clients := []string{"client", "client-h1"}
	f.WaitPodsReady(t, ns, "app in (client, client-h1, plain)", len(clients)+1, 3*time.Minute)

	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	want := fmt.Sprintf("hello pod=ws-server client-id=%s\n20 ok", clientID)
	for _, client := range clients {
		// Until discovery knows the new Service, the client proxy forwards
		// to the original destination without mTLS (no client-id).
		f.WaitFor(t, client+": a WebSocket through both proxies with mTLS", 2*time.Minute, func(ctx context.Context) (bool, error) {
			out, stderr, err := f.ExecE(ctx, ns, client, client, nil, "testapp", "ws", "-n", "20", "ws://ws-server:8080/ws")
			if err != nil {
				return false, fmt.Errorf("testapp ws: %w: %s %s", err, out, stderr)
			}
			if got := strings.TrimSpace(out); got != want {
				return false, fmt.Errorf("testapp ws printed %q, want %q", got, want)
			}
			return true, nil
		})
	}

	// No message crosses the pod network in clear. The server's echoes
	// are not masked (a client's frames are), so an echo in clear carries
	// the marker. Control: from a pod without a proxy, it does.
	_, _, c := capturedMarker(t, func(marker string) string {
		return f.Exec(t, ns, "plain", "plain", "testapp", "ws", "-n", "3", "-message", marker, "ws://"+pod.Status.PodIP+":8080/ws")
	})
	if c.Seen() == 0 {
		t.Fatalf("the capture did not see an unmeshed client's WebSocket echoes in clear (%d frames captured)", c.Frames())
	}
	for _, client := range clients {
		out, marker, c := capturedMarker(t, func(m string) string {
			return f.Exec(t, ns, client, client, "testapp", "ws", "-n", "3", "-message", m, "ws://ws-server:8080/ws")
		})
		if !strings.Contains(out, "3 ok") {
			t.Fatalf("%s: testapp ws -message %s printed %q", client, marker, out)
		}
		if c.Seen() != 0 {
			t.Errorf("%s: a meshed WebSocket crossed the pod network in clear: %d of %d frames carried its messages", client, c.Seen(), c.Frames())
		}
	}

	// Both clients hold a WebSocket open; the server pod goes away.
	type result struct {
		client, out, stderr string
		err                 error
	}
	results := make(chan result, len(clients))
	for _, client := range clients {
		go func() {
			out, stderr, err := f.ExecE(framework.Context(t, 2*time.Minute), ns, client, client, nil,
				"testapp", "ws", "-n", "1", "-hold", "90s", "ws://ws-server:8080/ws")
			results <- result{client, out, stderr, err}
		}()
	}
	f.WaitFor(t, "both WebSockets open at the server", time.Minute, func(ctx context.Context) (bool, error) {
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "get", "http://ws-server:8080/websockets")
		if err != nil {
			return false, fmt.Errorf("testapp get /websockets: %w: %s", err, stderr)
		}
		if got := strings.TrimSpace(out); got != fmt.Sprint(len(clients)) {
			return false, fmt.Errorf("/websockets says %q, want %d", got, len(clients))
		}
		return true, nil
	})
	start := time.Now()
	f.KubectlCmd(t, "", "delete", "pod", "-n", ns, "ws-server", "--wait=false")
	for range clients {
		r := <-results
		if r.err != nil {
			t.Errorf("%s: a WebSocket open while the server pod stopped: %v: %s %s", r.client, r.err, r.out, r.stderr)
			continue
		}
		if !strings.Contains(r.out, ": 1001 server stopping") {
			t.Errorf("%s: testapp ws -hold printed %q, want the server's close frame (1001 server stopping)", r.client, r.out)
			continue
		}
		t.Logf("%s: %s (%v after the pod's deletion)", r.client, strings.ReplaceAll(strings.TrimSpace(r.out), "\n", "; "), time.Since(start).Round(100*time.Millisecond))
	}
}
