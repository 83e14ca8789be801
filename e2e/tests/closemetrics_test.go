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

// closeService is the Service "tcp" of the server's two TCP echoes, the
// ports opaque by its annotation: 9000, which closes cleanly, 9100, which
// resets each connection once its client has ended its side, and 9200,
// where nothing listens.
const closeService = `apiVersion: v1
kind: Service
metadata:
  name: tcp
  annotations: {config.conduit.dev/opaque-ports: "9000,9100,9200"}
spec:
  selector: {app: server}
  ports: [{name: echo, port: 9000, targetPort: echo}, {name: reset, port: 9100, targetPort: reset}, {name: refused, port: 9200, targetPort: 9200}]
`

// TestTCPCloseClassified: on the cluster, the proxies classify how opaque
// connections end (docs/proxy.md, tcp_close_total): the server's proxy
// counts its connection to an application that closes cleanly as
// classification="success", and to one that resets it as
// classification="failure", errno="ECONNRESET", on peer="dst" only: the
// meshed client's mTLS connection, which the server's proxy then closes,
// and the client proxy's connection to it, are successes. Before stop 32,
// tcp_close_total had neither label and the inbound proxy did not count
// its connections to the application at all: every series here was
// absent, and the counts stayed at 0. A proxy that classified every end
// as a success (checked on the cluster) fails the reset case: no
// ECONNRESET is counted. An application that refuses the connection (no
// listener) is a failure on both proxies, the same every time: the
// server's proxy counts the client's connection errno="ECONNREFUSED" and
// resets it, the client's proxy counts errno="ECONNRESET" and resets its
// application's connection, which reads "connection reset by peer".
// Before, the server's proxy counted a success, the client's proxy a
// success, ECONNRESET or EPIPE by timing, and the client read a clean end
// of stream.
func TestTCPCloseClassified(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	ns := meshedNamespace(t, f, "tcpclose")
	image := f.Image("testapp")
	f.Apply(t, ns, manifests(echoDeployment("server", image, []string{"-tcp-addr", ":9000", "-reset-addr", ":9100"}, "echo:9000", "reset:9100"),
		closeService, sleeperPod("client", image)))
	server := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	client := f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)[0]
	if !injected(&server) || !injected(&client) {
		t.Fatal("the server or the client has no proxy")
	}
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	const (
		success = `classification="success"`
		reset   = `classification="failure",errno="ECONNRESET"`
		refused = `classification="failure",errno="ECONNREFUSED"`
		anyFail = `classification="failure"`
	)
	// The series of the server's proxy: its connections to the application,
	// and the client's connections to it.
	appConns := []string{`direction="inbound"`, `peer="dst"`}
	clientConns := []string{`direction="inbound"`, `peer="src"`, `tls="true"`, `client_id="` + clientID + `"`}
	// The client's proxy: its mTLS connections to the server's.
	toServer := []string{`direction="outbound"`, `peer="dst"`, `tls="true"`}
	type counts struct {
		appOK, appReset, appFail, clientOK, clientFail, clientRefused, outOK, outFail, outReset float64
	}
	read := func() counts {
		c := func(pod string, labels []string, class string) float64 {
			return proxyCounter(t, f, ns, pod, "tcp_close_total", append(labels, class)...)
		}
		return counts{
			appOK: c(server.Name, appConns, success), appReset: c(server.Name, appConns, reset), appFail: c(server.Name, appConns, anyFail),
			clientOK: c(server.Name, clientConns, success), clientFail: c(server.Name, clientConns, anyFail),
			clientRefused: c(server.Name, clientConns, refused),
			outOK:         c(client.Name, toServer, success), outFail: c(client.Name, toServer, anyFail),
			outReset: c(client.Name, toServer, reset),
		}
	}
	// A connection is counted once both of its directions have ended,
	// a moment after the client's exchange: wait for the counts.
	waitCounts := func(t *testing.T, what string, ok func(c counts) bool) counts {
		t.Helper()
		var last counts
		f.WaitFor(t, what, 30*time.Second, func(context.Context) (bool, error) {
			last = read()
			if !ok(last) {
				return false, fmt.Errorf("tcp_close_total %+v", last)
			}
			return true, nil
		})
		return last
	}
	echo := func(t *testing.T, addr string) {
		t.Helper()
		out := f.Exec(t, ns, "client", "client", "testapp", "tcp", addr, "hello")
		if !strings.HasPrefix(out, server.Name+" hello from ") {
			t.Fatalf("testapp tcp %s printed %q, want the echo of %s", addr, out, server.Name)
		}
	}
	// The Service is new: wait until the client's proxy routes it.
	f.WaitFor(t, "an echo from tcp:9000", time.Minute, func(ctx context.Context) (bool, error) {
		o, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "tcp", "tcp:9000", "hello")
		if err != nil {
			return false, fmt.Errorf("testapp tcp: %w: %s %s", err, o, stderr)
		}
		return true, nil
	})

	const n = 3
	t.Run("an application that closes cleanly", func(t *testing.T) {
		c0 := read()
		for range n {
			echo(t, "tcp:9000")
		}
		c := waitCounts(t, fmt.Sprintf("%d more successes on each side", n), func(c counts) bool {
			return c.appOK >= c0.appOK+n && c.clientOK >= c0.clientOK+n && c.outOK >= c0.outOK+n
		})
		if c.appFail != c0.appFail || c.clientFail != c0.clientFail || c.outFail != c0.outFail {
			t.Errorf("clean closes counted as failures: before %+v, after %+v", c0, c)
		}
	})

	t.Run("an application that resets", func(t *testing.T) {
		c0 := read()
		for range n {
			echo(t, "tcp:9100")
		}
		c := waitCounts(t, fmt.Sprintf("%d more ECONNRESET failures of the application's connections", n), func(c counts) bool {
			return c.appReset >= c0.appReset+n && c.clientOK >= c0.clientOK+n
		})
		if c.appFail-c0.appFail != c.appReset-c0.appReset {
			t.Errorf("failures other than ECONNRESET: before %+v, after %+v", c0, c)
		}
		// The reset is counted on the side that failed only.
		if c.clientFail != c0.clientFail || c.outFail != c0.outFail {
			t.Errorf("the application's reset counted on the client's connections too: before %+v, after %+v", c0, c)
		}
		if c.outOK < c0.outOK+n {
			t.Errorf("the client's proxy counts %v clean closes of its connections to the server's, want %d more: before %+v, after %+v", c.outOK-c0.outOK, n, c0, c)
		}
	})
	t.Run("an application that refuses", func(t *testing.T) {
		c0 := read()
		for range n {
			out, stderr, err := f.ExecE(framework.Context(t, time.Minute), ns, "client", "client", nil, "testapp", "tcp", "tcp:9200", "hello")
			if err == nil || !strings.Contains(stderr, "connection reset by peer") {
				t.Fatalf("testapp tcp tcp:9200: err %v, stdout %q, stderr %q; want its connection reset", err, out, stderr)
			}
		}
		c := waitCounts(t, fmt.Sprintf("%d more ECONNREFUSED on the server's proxy and ECONNRESET on the client's", n), func(c counts) bool {
			return c.clientRefused >= c0.clientRefused+n && c.outReset >= c0.outReset+n
		})
		if c.clientFail-c0.clientFail != n || c.outFail-c0.outFail != n || c.clientOK != c0.clientOK || c.outOK != c0.outOK {
			t.Errorf("want exactly %d failures on each proxy and no success: before %+v, after %+v", n, c0, c)
		}
		if c.appOK != c0.appOK || c.appFail != c0.appFail {
			t.Errorf("connections to the application counted, yet none opened: before %+v, after %+v", c0, c)
		}
	})
}
