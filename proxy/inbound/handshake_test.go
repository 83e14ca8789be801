package inbound

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
	"github.com/conduit-mesh/conduit/proxy/internal/tlstest"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// TestStalledHandshakeClosed: a meshed client that sends its ClientHello
// and nothing more is cut off once the detection timeout has passed (the
// handshake's deadline), and its connection counted as closed: the
// proxy's own deadline is no failure.
func TestStalledHandshakeClosed(t *testing.T) {
	p, reg := tlsInbound(t, 200*time.Millisecond)
	addr := servetest.Serve(t, p)
	hello := tlstest.ClientHello(t, noIdentity{}.Name(), nil)
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		// The server's flight, then its close: the client never finishes.
		_, err = io.Copy(io.Discard, c)
		waited := time.Since(start)
		c.Close()
		if err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("connection %d: %v after %v, want the proxy's close", i, err, waited)
		}
		if waited < 150*time.Millisecond {
			t.Fatalf("connection %d closed after %v, before the detection timeout", i, waited)
		}
	}
	waitMetric(t, reg, `tcp_close_total{direction="inbound",peer="src",tls="true",classification="success"}`, 20)
}

// TestHandshakeDeadlineRace: clients that give up on their handshake just
// as the proxy's deadline passes, many at once (run with -race). When the
// handshake was bounded by a context, crypto/tls closed the connection
// from a goroutine of its own as the context ended, without waiting for
// it; when the client's close ended the handshake first, that close read
// the connection's stats while the proxy, its handshake over, opened
// them: a data race, found by TestManyConcurrentRequests in proxy/app
// under -race, and reported here by every run of three with the old code.
func TestHandshakeDeadlineRace(t *testing.T) {
	const timeout = 50 * time.Millisecond
	p, reg := tlsInbound(t, timeout)
	addr := servetest.Serve(t, p)
	hello := tlstest.ClientHello(t, noIdentity{}.Name(), nil)
	const n = 300
	var wg sync.WaitGroup
	var dialed atomic.Int64
	for i := range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return // a burst this size may overflow the listener's backlog
			}
			dialed.Add(1)
			_, _ = c.Write(hello)
			// Around the deadline: a spread of 10 ms either side.
			time.Sleep(timeout - 10*time.Millisecond + time.Duration(i%20)*time.Millisecond)
			c.Close()
		})
	}
	wg.Wait()
	if d := dialed.Load(); d < n/2 {
		t.Fatalf("%d of %d connections made", d, n)
	}
	waitMetric(t, reg, `tcp_open_connections{direction="inbound",peer="src",tls="true"}`, 0)
}

// tlsInbound is an inbound proxy with a server certificate for its
// identity and the detection (and handshake) timeout given.
func tlsInbound(t *testing.T, timeout time.Duration) (*Proxy, *metrics.Registry) {
	t.Helper()
	id := noIdentity{}.Name()
	ca, err := pki.NewRoot("test root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := tlstest.Leaf(t, ca, id, time.Hour)
	reg := metrics.New()
	return New(Options{
		Log:           slog.New(slog.DiscardHandler),
		Metrics:       reg,
		Identity:      noIdentity{},
		TLS:           &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS13},
		DetectTimeout: timeout,
		OrigDst: origdst.Func(func(net.Conn) (netip.AddrPort, error) {
			return netip.MustParseAddrPort("127.0.0.1:1"), nil
		}),
	}), reg
}

// waitMetric waits up to 5 s for series to have the value want
// (metricValue).
func waitMetric(t *testing.T, reg *metrics.Registry, series string, want int) {
	t.Helper()
	got := metricValue(t, reg, series)
	for deadline := time.Now().Add(5 * time.Second); got != want && time.Now().Before(deadline); got = metricValue(t, reg, series) {
		time.Sleep(20 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("%s = %d, want %d", series, got, want)
	}
}
