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

// TestResponseHeadNotHeldThroughTheMesh: an application that answers its
// head at once and its body later (a long poll, a slow report) has the head
// reach a meshed client through both proxies before the body exists: the
// client waits at most 2 s for a head (get -header-timeout, as
// http.Transport's ResponseHeaderTimeout) while the body comes 4 s later,
// over HTTP/1.1 and h2c, with and without Content-Length. Until 88fcfab
// the proxies held such a head until the body's first bytes (shown in
// process by proxy/app's TestResponseHeadNotHeldForBody, which timed out
// in 9 of its 16 cases), and such a client gave up. The control: a head that really is 4 s late does fail
// the client, so the timeout bites through the mesh.
func TestResponseHeadNotHeldThroughTheMesh(t *testing.T) {
	get := meshedEchoPair(t, "headfirst")

	for _, c := range []struct {
		name string
		args []string
	}{
		{"HTTP/1.1, chunked", []string{"http://server:8080/a?body-delay=4s"}},
		{"HTTP/1.1, Content-Length", []string{"http://server:8080/b?body-delay=4s&length=1"}},
		{"h2c, streamed", []string{"-h2c", "http://server:8080/c?body-delay=4s"}},
		{"h2c, Content-Length", []string{"-h2c", "http://server:8080/d?body-delay=4s&length=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			if err := get(context.Background(), append([]string{"-header-timeout", "2s"}, c.args...)...); err != nil {
				t.Fatalf("%v: the head was held back with the body", err)
			}
			if d := time.Since(start); d < 4*time.Second {
				t.Errorf("answered in %v: the body was not delayed, the test proves nothing", d)
			}
		})
	}

	t.Run("control: a late head fails the client", func(t *testing.T) {
		err := get(context.Background(), "-header-timeout", "2s", "http://server:8080/e?delay=4s")
		if err == nil || !strings.Contains(err.Error(), "timeout awaiting response headers") {
			t.Fatalf("a head 4 s late with -header-timeout 2s: %v, want a response-header timeout", err)
		}
	})
}

// meshedEchoPair deploys a meshed echo server (Service server:8080) and a
// meshed client pod in a new namespace named after prefix, and returns
// get, which runs testapp get in the client pod and checks that every
// answer crossed both proxies with mTLS (the server saw the client's
// identity). It returns once a request does.
func meshedEchoPair(t *testing.T, prefix string) (get func(ctx context.Context, args ...string) error) {
	t.Helper()
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, prefix)
	image := f.Image("testapp")
	f.Apply(t, ns, manifests(echoDeployment("server", image, nil), httpService("server"), sleeperPod("client", image)))
	pod := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	if !injected(&pod) {
		t.Fatalf("pod %s has no proxy", pod.Name)
	}
	client := f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)[0]
	if !injected(&client) {
		t.Fatalf("pod %s has no proxy", client.Name)
	}
	f.WaitEndpoints(t, ns, "server", 1, time.Minute)
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"

	get = func(ctx context.Context, args ...string) error {
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, append([]string{"testapp", "get", "-timeout", "20s"}, args...)...)
		if err != nil {
			return fmt.Errorf("testapp get %s: %w: %s %s", strings.Join(args, " "), err, out, stderr)
		}
		for _, e := range decodeEchoes(t, out) {
			if err := e.sawClient(clientID); err != nil {
				return err
			}
		}
		return nil
	}
	// Until discovery knows the Service the client's proxy forwards it
	// without mTLS.
	f.WaitFor(t, "meshed requests with mTLS", 2*time.Minute, func(ctx context.Context) (bool, error) {
		err := get(ctx, "http://server:8080/")
		return err == nil, err
	})
	return get
}

// TestCutResponseThroughTheMesh: a response the application cuts short
// (1 MiB of body, then its handler fails) reaches a meshed client with
// every byte the application sent, then the failure, although the client
// reads the body only 2 s after the head, long after the server's proxy
// reset the stream: over HTTP/1.1 and h2c, chunked or with a Content-Length.
// Until 2026-12-07 the client's proxy dropped what it had received and not
// yet passed on when the reset came (proxy/app's TestCutResponseKeepsItsBytes
// lost bytes in 6 to 9 of its 16 cases per run, getting 0 to 1,036,288 of
// the 1,048,576).
func TestCutResponseThroughTheMesh(t *testing.T) {
	get := meshedEchoPair(t, "cutshort")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"HTTP/1.1, chunked", []string{"http://server:8080/a?cut=1048576"}},
		{"HTTP/1.1, Content-Length", []string{"http://server:8080/b?cut=1048576&length=1"}},
		{"h2c, streamed", []string{"-h2c", "http://server:8080/c?cut=1048576"}},
		{"h2c, Content-Length", []string{"-h2c", "http://server:8080/d?cut=1048576&length=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := get(context.Background(), append([]string{"-read-delay", "2s"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), "reading body (status 200) after 1048576 bytes") {
				t.Fatalf("%v; want a read that fails after all 1048576 bytes the application sent", err)
			}
		})
	}
}

// TestEarlyResponseThroughTheMesh: an application that answers an upload
// before it reads the body (a 413 on its headers, then closing) has that
// answer reach a meshed client that holds the rest of its 8 MiB body until
// it comes, over HTTP/1.1 and h2c. Until 2026-12-07 the server's proxy sent
// the whole body to the application before it read the answer, so the
// answer waited for a body that was not coming (proxy/app's
// TestEarlyResponseReachesClient shows each relay mode). The control: the
// same client, to a server that reads the body before it answers, gets no
// answer, so the client does hold its body.
func TestEarlyResponseThroughTheMesh(t *testing.T) {
	get := meshedEchoPair(t, "early")
	upload := []string{"-early-upload", "8388608", "-expect-status", "413"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"HTTP/1.1", []string{"http://server:8080/status/413?early=1"}},
		{"h2c", []string{"-h2c", "http://server:8080/status/413?early=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := get(context.Background(), append(append(upload, "-timeout", "10s"), c.args...)...); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("control: the server reads the body first", func(t *testing.T) {
		err := get(context.Background(), append(upload, "-timeout", "3s", "http://server:8080/status/413")...)
		if err == nil || !strings.Contains(err.Error(), "Client.Timeout exceeded") {
			t.Fatalf("%v, want no answer before the client's timeout", err)
		}
	})
}

// TestInformationalResponsesThroughTheMesh: a 103 Early Hints the
// application sends before its answer reaches a meshed client through
// both proxies (RFC 9110 has proxies pass 1xx responses on), over HTTP/1.1
// and h2c. Until 2026-12-07 the default path dropped it (proxy/app's
// TestInformationalResponsesPassed shows each relay mode). The control: a
// request without hints fails -expect-early-hints, so the check bites.
func TestInformationalResponsesThroughTheMesh(t *testing.T) {
	get := meshedEchoPair(t, "hints")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"HTTP/1.1", []string{"http://server:8080/?hints=1"}},
		{"h2c", []string{"-h2c", "http://server:8080/?hints=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := get(context.Background(), append([]string{"-expect-early-hints"}, c.args...)...); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("control: no hints sent", func(t *testing.T) {
		err := get(context.Background(), "-expect-early-hints", "http://server:8080/")
		if err == nil || !strings.Contains(err.Error(), "no 103 Early Hints") {
			t.Fatalf("%v, want a failure naming the missing hints", err)
		}
	})
}
