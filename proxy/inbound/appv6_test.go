package inbound

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/ports"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// v6OnlyApp is an HTTP/1.1 and h2c application listening on [::1] alone;
// it answers with the protocol it was spoken to in. The test is skipped
// when the host cannot bind ::1, or when something holds 127.0.0.1 at the
// same port.
func v6OnlyApp(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this host: %v", err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	if c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), time.Second); err == nil {
		c.Close()
		l.Close()
		t.Skipf("127.0.0.1:%d is taken by another process", port)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: &protos,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "v6 "+r.Proto)
		}),
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return port
}

// TestAppOnIPv6Loopback: an application listening on [::1] only is
// reached on every inbound path once 127.0.0.1 refuses the connection,
// unless the proxy serves IPv4 alone (CONDUIT_PROXY_IPV6=off, or a host
// without IPv6).
func TestAppOnIPv6Loopback(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ipv6       bool
		noFast     bool // HTTP/1 through net/http
		noH2Fast   bool // HTTP/2 through net/http
		h2c        bool // the client speaks prior-knowledge HTTP/2
		opaque     bool // the port is opaque: bytes are passed through
		want       string
		wantStatus int
	}{
		{name: "HTTP/1 fast path", ipv6: true, want: "v6 HTTP/1.1"},
		{name: "HTTP/1 net/http", ipv6: true, noFast: true, want: "v6 HTTP/1.1"},
		{name: "HTTP/2 fast path", ipv6: true, h2c: true, want: "v6 HTTP/2.0"},
		{name: "HTTP/2 net/http", ipv6: true, h2c: true, noH2Fast: true, want: "v6 HTTP/2.0"},
		{name: "opaque", ipv6: true, opaque: true, want: "v6 HTTP/1.1"},
		{name: "IPv4 only: no fallback", ipv6: false, wantStatus: http.StatusBadGateway},
		{name: "IPv4 only, opaque: no fallback", ipv6: false, opaque: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := v6OnlyApp(t)
			o := Options{
				Log: slog.New(slog.DiscardHandler), Metrics: metrics.New(),
				OrigDst: origdst.Func(func(net.Conn) (netip.AddrPort, error) {
					return netip.AddrPortFrom(netip.MustParseAddr("fd00::1"), port), nil
				}),
				DetectTimeout: time.Second,
				IPv6:          tc.ipv6,
				NoFastPath:    tc.noFast,
				NoH2FastPath:  tc.noH2Fast,
			}
			if tc.opaque {
				o.OpaquePort = []ports.Range{{From: port, To: port}}
			}
			p := New(o)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = p.Serve(l) }()
			defer l.Close()

			tr := &http.Transport{DisableKeepAlives: true}
			if tc.h2c {
				var protos http.Protocols
				protos.SetUnencryptedHTTP2(true)
				tr = &http.Transport{Protocols: &protos}
			}
			tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", l.Addr().String())
			}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			resp, err := cl.Get("http://app.example/")
			if tc.opaque && tc.want == "" {
				// The proxy closes the client's connection: nothing answers.
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Fatalf("got %d %q, want the connection closed", resp.StatusCode, b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.wantStatus != 0 {
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("got %d %q, want %d", resp.StatusCode, b, tc.wantStatus)
				}
				if e := resp.Header.Get("Conduit-Proxy-Error"); !strings.Contains(e, "127.0.0.1:"+strconv.Itoa(int(port))) {
					t.Errorf("Conduit-Proxy-Error %q does not name 127.0.0.1:%d", e, port)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || string(b) != tc.want {
				t.Fatalf("got %d %q (%s), want 200 %q", resp.StatusCode, b, resp.Header.Get("Conduit-Proxy-Error"), tc.want)
			}
		})
	}
}
