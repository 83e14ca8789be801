package inbound

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/metrics"
)

// metricValue returns the value of the series line that starts with
// prefix (name and labels), or -1 when there is none.
func metricValue(t *testing.T, reg *metrics.Registry, series string) int {
	t.Helper()
	var buf bytes.Buffer
	if _, err := reg.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(buf.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			var n int
			if _, err := fmt.Sscan(rest, &n); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return n
		}
	}
	return -1
}

const appSeries = `{direction="inbound",peer="dst",tls="false"`

// TestAppConnectionsCounted: the proxy's connections to the application on
// the HTTP paths count in the inbound tcp_* metrics (peer="dst"), as the
// opaque path's do, and close as successes when nothing failed.
func TestAppConnectionsCounted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		appH2 bool
		send  func(t testing.TB, addr string) int
	}{
		{"HTTP/1.1 fast path", Options{}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, "POST /t HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello")
		}},
		{"HTTP/1.1 fast path, chunked", Options{}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, fmt.Sprintf(chunkedForged, ""))
		}},
		{"HTTP/1.1 net/http path", Options{NoFastPath: true}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, "POST /t HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello")
		}},
		{"HTTP/1 over HTTP/2", Options{}, false, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, true)
		}},
		{"HTTP/2 to an HTTP/2 application", Options{}, true, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, false)
		}},
		{"HTTP/2 to an HTTP/2 application with net/http's transport", Options{NoH2FastPath: true}, true, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, _ := startApp(t, tc.appH2)
			reg := metrics.New()
			addr, p := startInbound(t, Options{Metrics: reg, NoFastPath: tc.opts.NoFastPath, NoH2FastPath: tc.opts.NoH2FastPath}, port)
			if code := tc.send(t, addr); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if n := metricValue(t, reg, "tcp_open_total"+appSeries+"}"); n != 1 {
				t.Errorf("tcp_open_total of the application's connections = %d, want 1", n)
			}
			if n := metricValue(t, reg, "tcp_open_connections"+appSeries+"}"); n != 1 {
				t.Errorf("tcp_open_connections of the application's connections = %d, want 1 (pooled)", n)
			}
			if n := metricValue(t, reg, "tcp_write_bytes_total"+appSeries+"}"); n <= 0 {
				t.Errorf("tcp_write_bytes_total of the application's connections = %d, want > 0", n)
			}
			if n := metricValue(t, reg, "tcp_read_bytes_total"+appSeries+"}"); n <= 0 {
				t.Errorf("tcp_read_bytes_total of the application's connections = %d, want > 0", n)
			}
			if err := p.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			// Idle connections close at shutdown (net/http's h2c ones as
			// its transport gets to it).
			deadline := time.Now().Add(2 * time.Second)
			for metricValue(t, reg, "tcp_close_total"+appSeries+`,classification="success"}`) != 1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := metricValue(t, reg, "tcp_close_total"+appSeries+`,classification="success"}`); n != 1 {
				t.Errorf("tcp_close_total{classification=\"success\"} of the application's connections = %d, want 1", n)
			}
			if n := metricValue(t, reg, "tcp_open_connections"+appSeries+"}"); n != 0 {
				t.Errorf("tcp_open_connections of the application's connections after shutdown = %d, want 0", n)
			}
		})
	}
}

// TestAppConnectionResetIsFailure: an application connection reset while
// a request is in flight closes as a failure, with its errno.
func TestAppConnectionResetIsFailure(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			// Read the request head, then reset the connection (SO_LINGER 0).
			r, err := http.ReadRequest(bufio.NewReader(c))
			if err == nil {
				r.Body.Close()
			}
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	reg := metrics.New()
	addr, _ := startInbound(t, Options{Metrics: reg}, uint16(l.Addr().(*net.TCPAddr).Port))
	if code := sendHTTP1(t, addr, "GET /t HTTP/1.1\r\nHost: web\r\n\r\n"); code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", code)
	}
	if n := metricValue(t, reg, "tcp_close_total"+appSeries+`,classification="failure",errno="ECONNRESET"}`); n != 1 {
		t.Errorf("tcp_close_total{classification=\"failure\",errno=\"ECONNRESET\"} = %d, want 1", n)
	}
	if n := metricValue(t, reg, "tcp_close_total"+appSeries+`,classification="success"}`); n != 0 {
		t.Errorf("tcp_close_total{classification=\"success\"} = %d, want 0", n)
	}
}
