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

// muteApps: a Service "server" (and "server-ws", the same pods for
// WebSockets, so that a client's proxy balances them afresh) whose pods are
// one meshed testapp server and two pods that are Ready but do not listen
// on the Service's port, as
// a pod looks to a client while it stops: one meshed (its proxy runs, its
// application is gone), one unmeshed (nothing answers at all). And two
// meshed client pods: "client" with the proxy's defaults (HTTP/1 between
// proxies on one HTTP/2 connection, where a refusal is a REFUSED_STREAM),
// "client-http1" sending HTTP/1 to meshed endpoints as HTTP/1.1 (where a
// refusal is a 502 marked Conduit-Proxy-Unsent).
func muteApps(image string) string {
	mute := func(name, annotations string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  labels: {app: server}
  annotations: {%[3]s}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: mute, image: %[2]s, imagePullPolicy: IfNotPresent, args: [sleep]}]
`, name, image, annotations)
	}
	return manifests(
		echoDeployment("server", image, []string{"-grpc-addr", ":9090"}, "grpc:9090"),
		`apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  selector: {app: server}
  ports: [{name: http, port: 8080, targetPort: 8080}, {name: grpc, port: 9090, targetPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: server-ws}
spec:
  selector: {app: server}
  ports: [{name: http, port: 8080, targetPort: 8080}]
`,
		mute("mute-meshed", ""),
		mute("mute-unmeshed", "conduit.dev/inject: disabled"),
		sleeperPod("client", image),
		sleeperPod("client-http1", image, "config.conduit.dev/proxy-http1-transport: http1"))
}

// TestUnreachableEndpointsAreSkipped: of a Service's three ready
// endpoints, two cannot answer: a meshed pod whose application does not
// listen (its proxy refuses each request unprocessed) and an unmeshed pod
// where nothing listens (the connection is refused). A meshed client's
// requests must all be answered, by the one pod that serves: its proxy
// sends each request that was not sent to another endpoint. So must those
// of a client whose proxy sends HTTP/1.1 between proxies. Then gRPC
// calls of 1 MiB: one that the meshed mute pod refused goes to the serving
// pod too; and WebSockets, through server-ws: an Upgrade that either mute
// pod could not take opens on the serving pod. The mute endpoints must have
// been tried, or the test proved nothing.
func TestUnreachableEndpointsAreSkipped(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, "reroute")
	f.WaitPodsReady(t, framework.ControlPlaneNamespace, "conduit.dev/control-plane-component=injector", 1, 2*time.Minute)
	f.Apply(t, ns, muteApps(f.Image("testapp")))
	server := f.WaitPodsReady(t, ns, "app=server", 3, 3*time.Minute)
	var serving string
	for _, p := range server {
		switch {
		case p.Name == "mute-unmeshed" && injected(&p):
			t.Fatal("mute-unmeshed was injected; it must stay unmeshed (annotation conduit.dev/inject: disabled)")
		case p.Name != "mute-unmeshed" && !injected(&p):
			t.Fatalf("pod %s has no proxy: admitted while the injector was unreachable?", p.Name)
		case strings.HasPrefix(p.Name, "server-"):
			serving = p.Name
		}
	}
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)
	f.WaitPodsReady(t, ns, "app=client-http1", 1, 3*time.Minute)

	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	mtls := fmt.Sprintf(`"Conduit-Client-Id":[%q]`, clientID)
	authority := `authority="server.` + ns + `.svc.cluster.local:8080"`
	for _, client := range []string{"client", "client-http1"} {
		// Until discovery knows the Service, the client's proxy forwards to
		// the original destination (the ClusterIP, any pod): wait for an
		// answer that came through both proxies with mTLS.
		f.WaitFor(t, client+": an answer through both proxies", 2*time.Minute, func(ctx context.Context) (bool, error) {
			out, stderr, err := f.ExecE(ctx, ns, client, client, nil, "testapp", "get", "-timeout", "5s", "-expect-body", mtls, "http://server:8080/")
			if err != nil {
				return false, fmt.Errorf("%w: %s %s", err, out, stderr)
			}
			return true, nil
		})

		// 100 requests over about 3 s: each mute endpoint is avoided for 1 s
		// after it failed, then tried again (after 2 s, then 4 s, if it
		// failed again).
		out, stderr, err := f.ExecE(context.Background(), ns, client, client, nil, "testapp", "get", "-n", "100", "-interval", "30ms",
			"-keep-going", "-summary", "-stats", "-timeout", "5s", "-expect-body", mtls, "http://server:8080/")
		summary, stats, _ := strings.Cut(strings.TrimSpace(out), "\n")
		t.Logf("%s, 100 requests: %s\n%s", client, summary, stats)
		if err != nil || summary != "100 ok" {
			t.Fatalf("%s: requests failed: %v\n%s\n%s", client, err, out, firstLines(stderr, 20))
		}
		if want := serving + "=100"; !strings.Contains(stats, want) {
			t.Errorf("%s: answers by pod: %s, want all from %s", client, stats, want)
		}

		// The client's proxy counted failed attempts (status 0) to both
		// mute pods, each labelled with its pod.
		for _, pod := range []string{"mute-meshed", "mute-unmeshed"} {
			if n := proxyCounter(t, f, ns, client, "response_total", `direction="outbound"`, authority, `dst_pod="`+pod+`"`, `classification="failure"`); n < 1 {
				t.Errorf("%s's proxy counts %v failed attempts to %s: it was never tried", client, n, pod)
			}
		}
	}
	// The meshed mute pod's proxy counted the requests it refused.
	if n := proxyCounter(t, f, ns, "mute-meshed", "response_total", `direction="inbound"`, `classification="failure"`); n < 1 {
		t.Errorf("mute-meshed's proxy counts %v failed inbound requests, want the ones it refused", n)
	}

	// gRPC: bodies of unknown length. A call that mute-meshed's proxy
	// refused goes to the serving pod: the client's proxy keeps what it
	// read of the body until the answer's head, and mute-meshed's proxy let
	// it send no more than 64 KiB before refusing. The unary calls are of
	// 1 MiB, above grpc-go's own retry buffer (256 KiB): one refused used to
	// fail Unavailable (REFUSED_STREAM). Each run of testapp grpc makes
	// three calls (the unary one, an error status, a full-duplex stream);
	// ten runs over a few seconds.
	grpcWant := fmt.Sprintf("5 ok pod=%s client-id=%s", serving, clientID)
	grpcRun := func(ctx context.Context) (string, error) {
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "grpc", "-n", "5", "-unary-size", "1048576", "-timeout", "20s", "server:9090")
		if err != nil {
			return "", fmt.Errorf("testapp grpc: %w: %s %s", err, out, stderr)
		}
		if got := strings.TrimSpace(out); got != grpcWant {
			return "", fmt.Errorf("testapp grpc printed %q, want %q", got, grpcWant)
		}
		return out, nil
	}
	// Until discovery answers for the gRPC port, calls go to the ClusterIP.
	f.WaitFor(t, "a gRPC call through both proxies", 2*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := grpcRun(ctx)
		return err == nil, err
	})
	for i := range 10 {
		if _, err := grpcRun(context.Background()); err != nil {
			t.Fatalf("gRPC run %d: %v", i, err)
		}
	}
	n := proxyCounter(t, f, ns, "mute-meshed", "response_total", `direction="inbound"`, `authority="server:9090"`)
	if n < 1 {
		t.Errorf("mute-meshed's proxy counts %v gRPC requests: none was refused there, so the test proved nothing", n)
	}
	t.Logf("gRPC: 10 runs ok; mute-meshed's proxy refused %v calls", n)

	// WebSockets: an Upgrade that mute-meshed's proxy refused, or that
	// mute-unmeshed's connection refused, goes to the serving pod too.
	// Through a Service of their own, which the client's proxy has not
	// balanced yet: both mute pods are tried.
	wsWant := fmt.Sprintf("hello pod=%s client-id=%s\n1 ok", serving, clientID)
	f.WaitFor(t, "a WebSocket through both proxies", 2*time.Minute, func(ctx context.Context) (bool, error) {
		// Until discovery knows server-ws, the first goes to its ClusterIP.
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "ws", "-n", "1", "-timeout", "10s", "ws://server-ws:8080/ws")
		if err != nil || strings.TrimSpace(out) != wsWant {
			return false, fmt.Errorf("testapp ws: %v: printed %q, want %q: %s", err, out, wsWant, stderr)
		}
		return true, nil
	})
	for i := range 20 {
		out, stderr, err := f.ExecE(context.Background(), ns, "client", "client", nil, "testapp", "ws", "-n", "1", "-timeout", "10s", "ws://server-ws:8080/ws")
		if err != nil || strings.TrimSpace(out) != wsWant {
			t.Fatalf("WebSocket %d: %v: printed %q, want %q: %s", i, err, out, wsWant, stderr)
		}
	}
	wsAuthority := `authority="server-ws.` + ns + `.svc.cluster.local:8080"`
	for _, pod := range []string{"mute-meshed", "mute-unmeshed"} {
		n := proxyCounter(t, f, ns, "client", "response_total", `direction="outbound"`, wsAuthority, `dst_pod="`+pod+`"`, `classification="failure"`)
		if n < 1 {
			t.Errorf("the client's proxy counts %v failed WebSocket upgrades to %s: it was never tried", n, pod)
		}
		t.Logf("WebSockets: 20 ok; %v refused by %s", n, pod)
	}
}
