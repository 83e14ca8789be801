package outbound

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/metricstest"
	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

const (
	srcSeries = `direction="outbound",peer="src",tls="false"`
	dstSeries = `direction="outbound",peer="dst",tls="false"`
)

// seriesValue returns the value of a series line (name and labels), or
// "" when there is none.
func seriesValue(t *testing.T, reg *metrics.Registry, series string) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := reg.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// startOutbound serves an outbound proxy with o (no discovery: connections
// go to their original destination, unmeshed) on loopback whose every
// connection's original destination is dst.
func startOutbound(t *testing.T, o Options, dst string) (string, *metrics.Registry) {
	t.Helper()
	reg := metrics.New()
	o.Log, o.Metrics, o.DetectTimeout = slog.New(slog.DiscardHandler), reg, time.Second
	o.OrigDst = origdst.Func(func(net.Conn) (netip.AddrPort, error) { return netip.ParseAddrPort(dst) })
	return servetest.Serve(t, New(o)), reg
}

// TestOpaqueCloseClassified: an opaque connection counts each side's end
// on its own series (a reset is a failure with ECONNRESET, the other side
// and clean ends successes), and the dialed side's bytes once; the
// client's half-close reaches the server, which can still answer.
func TestOpaqueCloseClassified(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		serverResets, clientReset bool
		wantSrc, wantDst          string
	}{
		{"both close cleanly", false, false, metricstest.SuccessOnly, metricstest.SuccessOnly},
		{"the server resets mid-stream", true, false, metricstest.SuccessOnly, metricstest.ResetOnly},
		{"the client resets mid-stream", false, true, metricstest.ResetOnly, metricstest.SuccessOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, reg := startOutbound(t, Options{}, metricstest.PongServer(t, tc.serverResets).String())
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte{0, 1, 2, 3}); err != nil { // no protocol the proxy detects
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("read %q, %v; want pong", buf, err)
			}
			if tc.clientReset {
				metricstest.Reset(c)
			} else {
				_ = c.(*net.TCPConn).CloseWrite()
				if b, err := io.ReadAll(c); err != nil || string(b) != "bye" && !tc.serverResets {
					t.Errorf("read %q, %v after the half-close; want bye", b, err)
				}
			}
			if got := metricstest.CloseCounts(t, reg, srcSeries); got != tc.wantSrc {
				t.Errorf("client's connection: tcp_close_total %s, want %s", got, tc.wantSrc)
			}
			if got := metricstest.CloseCounts(t, reg, dstSeries); got != tc.wantDst {
				t.Errorf("server's connection: tcp_close_total %s, want %s", got, tc.wantDst)
			}
			read := "4" // pong
			if !tc.serverResets && !tc.clientReset {
				read = "7" // and bye
			}
			for m, want := range map[string]string{"tcp_write_bytes_total": "4", "tcp_read_bytes_total": read} {
				if got := seriesValue(t, reg, m+"{"+dstSeries+"}"); got != want {
					t.Errorf("%s of the server's connection = %s, want %s", m, got, want)
				}
			}
		})
	}
}

// TestAcceptedHTTPResetIsFailure: an application that resets its HTTP
// connection to the proxy closes it as a failure with ECONNRESET, on each
// HTTP/1 path.
func TestAcceptedHTTPResetIsFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"fast path", Options{}},
		{"net/http", Options{NoFastPath: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, reg := startOutbound(t, tc.opts, metricstest.PongServer(t, false).String())
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.WriteString(c, "GET /t HTTP/1.1\r\nHost: web\r\n") // half a head: the proxy waits
			time.Sleep(50 * time.Millisecond)
			metricstest.Reset(c)
			if got := metricstest.CloseCounts(t, reg, srcSeries); got != metricstest.ResetOnly {
				t.Errorf("tcp_close_total %s, want %s", got, metricstest.ResetOnly)
			}
		})
	}
}
