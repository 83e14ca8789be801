package app_test

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/app"
	"github.com/conduit-mesh/conduit/proxy/internal/metricstest"
)

// opaquePair starts a server proxy whose inbound forwards to appAddr and a
// client proxy whose outbound connections (original destination dst, an
// opaque Service) go to it over mTLS.
func (m *mesh) opaquePair(t *testing.T, appAddr, dst string) (client, server *app.Proxy) {
	t.Helper()
	server = m.startProxy(t, serverID, appAddr, "127.0.0.1:1")
	ep := meshedAddr(server.InboundAddr().String(), serverID)
	ep.ProtocolHint = &destinationv1.ProtocolHint{Protocol: &destinationv1.ProtocolHint_Opaque_{Opaque: &destinationv1.ProtocolHint_Opaque{}}}
	m.mu.Lock()
	m.profiles[dst] = &destinationv1.DestinationProfile{OpaqueProtocol: true, Endpoint: ep}
	m.mu.Unlock()
	return m.startProxy(t, clientID, "127.0.0.1:1", dst), server
}

// waitMetric waits up to 5 s for metricSum(admin, name, labels...) to be
// want, and reports an error if it is not.
func waitMetric(t *testing.T, admin net.Addr, want float64, name string, labels ...string) {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got = metricSum(t, admin.String(), name, labels...); got == want || time.Now().After(deadline) {
			break
		}
	}
	if got != want {
		t.Errorf("%s%q = %v, want %v; every series of %s:\n%s", name, labels, got, want, name, metricLines(t, admin.String(), name))
	}
}

// metricLines returns the exposition lines of the series of name.
func metricLines(t *testing.T, admin, name string) string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(scrape(t, admin), "\n") {
		if strings.HasPrefix(line, name+"{") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// The series of the connections between the two proxies, and of each
// proxy's connection with its application.
var (
	serverFromClient = []string{`direction="inbound"`, `peer="src"`, `tls="true"`, `client_id="` + clientID + `"`}
	serverToApp      = []string{`direction="inbound"`, `peer="dst"`}
	clientToServer   = []string{`direction="outbound"`, `peer="dst"`, `tls="true"`}
	clientFromApp    = []string{`direction="outbound"`, `peer="src"`}
)

const (
	success = `classification="success"`
	failure = `classification="failure"`
)

// TestOpaqueRefusedMTLS: an opaque connection through two proxies to a
// server pod where nothing listens on the port. The server's proxy counts
// the client's connection as a failure with ECONNREFUSED and resets it
// after the handshake; the client's proxy then counts its connection to
// the server's as a failure with ECONNRESET, every time, and resets the
// application's connection, whose read fails with ECONNRESET rather than
// returning EOF.
// Applications that send first and ones that wait for the server
// alternate.
func TestOpaqueRefusedMTLS(t *testing.T) {
	const n = 20
	m := newMesh(t)
	client, server := m.opaquePair(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(metricstest.ClosedPort(t)))), "10.9.9.10:3306")
	for i := range n {
		c, err := net.Dial("tcp", client.OutboundAddr().String())
		if errors.Is(err, syscall.ECONNRESET) {
			// The proxies were done before the dialer looked at its
			// connection: the reset came first.
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if i%2 == 0 {
			_, err := io.WriteString(c, "ping")
			if errors.Is(err, syscall.ECONNRESET) {
				// The reset came before the application's bytes: the
				// write took it, and a read would find the end.
				c.Close()
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		b, err := io.ReadAll(c)
		c.Close()
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("connection %d: the application read %q, %v; want ECONNRESET", i, b, err)
		}
	}
	waitMetric(t, server.AdminAddr(), n, "tcp_close_total", append(serverFromClient, failure, `errno="ECONNREFUSED"`)...)
	// The client's proxy counts the reset as ECONNRESET, every time. When
	// its write of the application's bytes meets the closed socket (EPIPE)
	// after its read took the ECONNRESET, the read's error replaces the
	// write's, even when the read notes it after the write's copy closed
	// the connection (netx.Info.pipe).
	waitMetric(t, client.AdminAddr(), n, "tcp_close_total", append(clientToServer, failure, `errno="ECONNRESET"`)...)
	waitMetric(t, client.AdminAddr(), n, "tcp_close_total", append(clientFromApp, success)...)
	for _, s := range []struct {
		admin  net.Addr
		series []string
		class  string
		want   float64
	}{
		{server.AdminAddr(), serverFromClient, success, 0},
		{server.AdminAddr(), serverFromClient, failure, n}, // ECONNREFUSED only
		{client.AdminAddr(), clientToServer, success, 0},
		{client.AdminAddr(), clientToServer, failure, n}, // ECONNRESET only
		{client.AdminAddr(), clientFromApp, failure, 0},
	} {
		if got := metricSum(t, s.admin.String(), "tcp_close_total", append(s.series, s.class)...); got != s.want {
			t.Errorf("tcp_close_total%q = %v, want %v", append(s.series, s.class), got, s.want)
		}
	}
	// The connection to the application never opened.
	if got := metricSum(t, server.AdminAddr().String(), "tcp_open_total", serverToApp...); got != 0 {
		t.Errorf("tcp_open_total%q = %v, want 0", serverToApp, got)
	}
}

// TestOpaqueCloseMTLS: the control. An opaque connection through two
// proxies that ends cleanly (the client half-closes, and the server
// answers that half-close before closing) is a success on all four
// series, and the answer sent after the half-close reaches the client.
func TestOpaqueCloseMTLS(t *testing.T) {
	const n = 5
	m := newMesh(t)
	client, server := m.opaquePair(t, metricstest.PongServer(t, false).String(), "10.9.9.11:3306")
	for i := range n {
		c, err := net.Dial("tcp", client.OutboundAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
			t.Fatalf("connection %d: read %q, %v; want pong", i, buf, err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		if b, err := io.ReadAll(c); err != nil || string(b) != "bye" {
			t.Errorf("connection %d: read %q, %v after the half-close; want bye", i, b, err)
		}
		c.Close()
	}
	for _, s := range []struct {
		admin  net.Addr
		series []string
	}{
		{server.AdminAddr(), serverFromClient},
		{server.AdminAddr(), serverToApp},
		{client.AdminAddr(), clientToServer},
		{client.AdminAddr(), clientFromApp},
	} {
		waitMetric(t, s.admin, n, "tcp_close_total", append(s.series, success)...)
		if got := metricSum(t, s.admin.String(), "tcp_close_total", append(s.series, failure)...); got != 0 {
			t.Errorf("tcp_close_total%q = %v, want 0", append(s.series, failure), got)
		}
	}
}
