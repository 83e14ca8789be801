package metricstest

import (
	"bytes"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
	"github.com/conduit-mesh/conduit/proxy/metrics"
)

// What CloseCounts returns for a series that counted one connection closed
// cleanly (SuccessOnly), with a reset (ResetOnly), or whose application
// refused the proxy's connection (RefusedOnly: an inbound peer="src").
const (
	SuccessOnly = `classification="success"} 1`
	ResetOnly   = `classification="failure",errno="ECONNRESET"} 1; classification="success"} 0`
	RefusedOnly = `classification="failure",errno="ECONNREFUSED"} 1; classification="success"} 0`
)

// CloseCounts waits up to 5 s for the series with labels (without braces)
// to count a closed connection, and returns its tcp_close_total lines, each
// as its class labels and value, sorted and joined with "; ".
func CloseCounts(t testing.TB, reg *metrics.Registry, labels string) string {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var buf bytes.Buffer
		if _, err := reg.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		closed := false
		for _, l := range strings.Split(buf.String(), "\n") {
			if rest, ok := strings.CutPrefix(l, "tcp_close_total{"+labels+","); ok {
				got = append(got, rest)
				closed = closed || !strings.HasSuffix(rest, " 0")
			}
		}
		if closed || time.Now().After(deadline) {
			break
		}
	}
	slices.Sort(got)
	return strings.Join(got, "; ")
}

// ClosedPort returns a loopback port where nothing listens (one that was
// just listened on and closed): a connection to it is refused.
func ClosedPort(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return port
}

// Reset closes the TCP connection c with a RST (SO_LINGER 0).
func Reset(c net.Conn) {
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.Close()
}

// PongServer listens on loopback and, for each connection, reads 4 bytes,
// answers "pong", then resets it (reset) or reads to the client's end,
// answers that half-close with "bye" and closes: a server whose end the
// metrics count as a failure or a success. It returns the address.
func PongServer(t testing.TB, reset bool) *net.TCPAddr {
	t.Helper()
	return servetest.TCP(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err == nil {
			_, _ = io.WriteString(c, "pong")
		}
		if reset {
			time.Sleep(20 * time.Millisecond) // "pong" reaches the client first
			Reset(c)
			return
		}
		_, _ = io.Copy(io.Discard, c)
		_, _ = io.WriteString(c, "bye")
		c.Close()
	})
}
