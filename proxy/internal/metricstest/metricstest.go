package metricstest

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/metrics"
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

// Reset closes the TCP connection c with a RST (SO_LINGER 0).
func Reset(c net.Conn) {
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.Close()
}
