package inbound

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/ports"
	"github.com/conduit-mesh/conduit/proxy/internal/metricstest"
	"github.com/conduit-mesh/conduit/proxy/metrics"
)

const (
	srcSeries = `direction="inbound",peer="src",tls="false"`
	dstSeries = `direction="inbound",peer="dst",tls="false"`
)

// opaqueClient sends 4 bytes that are no protocol the proxy detects, reads
// "pong", then resets the connection (reset) or closes it after the
// proxy's.
func opaqueClient(t *testing.T, addr string, reset bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v; want pong", buf, err)
	}
	if reset {
		metricstest.Reset(c)
		return
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, c)
}

// TestOpaqueCloseClassified: an opaque connection counts each side's end
// on its own series: a side that resets is a failure with ECONNRESET, the
// other and clean ends successes.
func TestOpaqueCloseClassified(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		appResets, clientReset bool
		wantSrc, wantDst       string
	}{
		{"both close cleanly", false, false, metricstest.SuccessOnly, metricstest.SuccessOnly},
		{"the application resets mid-stream", true, false, metricstest.SuccessOnly, metricstest.ResetOnly},
		{"the client resets mid-stream", false, true, metricstest.ResetOnly, metricstest.SuccessOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := metrics.New()
			addr, _ := startInbound(t, Options{Metrics: reg}, uint16(metricstest.PongServer(t, tc.appResets).Port))
			opaqueClient(t, addr, tc.clientReset)
			if got := metricstest.CloseCounts(t, reg, srcSeries); got != tc.wantSrc {
				t.Errorf("client's connection: tcp_close_total %s, want %s", got, tc.wantSrc)
			}
			if got := metricstest.CloseCounts(t, reg, dstSeries); got != tc.wantDst {
				t.Errorf("application's connection: tcp_close_total %s, want %s", got, tc.wantDst)
			}
		})
	}
}

// TestAcceptedHTTPResetIsFailure: a client that resets its HTTP connection
// closes as a failure with ECONNRESET, on each HTTP path; one that closes
// it after its response is a success.
func TestAcceptedHTTPResetIsFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"fast path", Options{}},
		{"net/http", Options{NoFastPath: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, _ := startApp(t, false)
			for _, reset := range []bool{false, true} {
				reg := metrics.New()
				addr, _ := startInbound(t, Options{Metrics: reg, NoFastPath: tc.opts.NoFastPath}, port)
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				want := metricstest.SuccessOnly
				if reset {
					// Half a request head: the proxy waits for the rest.
					_, _ = io.WriteString(c, "GET /t HTTP/1.1\r\nHost: web\r\n")
					time.Sleep(50 * time.Millisecond)
					metricstest.Reset(c)
					want = metricstest.ResetOnly
				} else {
					_, _ = io.WriteString(c, "GET /t HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}
				if got := metricstest.CloseCounts(t, reg, srcSeries); got != want {
					t.Errorf("reset %v: client's connection: tcp_close_total %s, want %s", reset, got, want)
				}
			}
		})
	}
}

// TestOpaqueRefusedIsFailure: an opaque connection whose application
// refuses the proxy's connection (on 127.0.0.1 and, with IPv6, on [::1]
// too) counts as a failure with ECONNREFUSED on the client's series, and
// the client's connection is reset, not closed: its read fails with
// ECONNRESET rather than returning EOF. Whether the client sent bytes
// first or waits for a server that speaks first makes no difference.
func TestOpaqueRefusedIsFailure(t *testing.T) {
	port := metricstest.ClosedPort(t)
	for _, tc := range []struct {
		name        string
		ipv6, sends bool
	}{
		{"client sends first", false, true},
		{"client waits", false, false},
		{"client sends first, [::1] tried too", true, true},
		{"client waits, [::1] tried too", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 5 {
				reg := metrics.New()
				o := Options{Metrics: reg, IPv6: tc.ipv6}
				if !tc.sends {
					o.OpaquePort = []ports.Range{{From: port, To: port}}
				}
				addr, _ := startInbound(t, o, port)
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.sends {
					if _, err := c.Write([]byte{0, 1, 2, 3}); err != nil { // no protocol the proxy detects
						t.Fatal(err)
					}
				}
				b, err := io.ReadAll(c)
				c.Close()
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("client read %q, %v; want ECONNRESET", b, err)
				}
				if got := metricstest.CloseCounts(t, reg, srcSeries); got != metricstest.RefusedOnly {
					t.Errorf("client's connection: tcp_close_total %s, want %s", got, metricstest.RefusedOnly)
				}
			}
		})
	}
}
