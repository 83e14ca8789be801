package inbound

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// TestOwnPortsRefused: a connection redirected to one of the proxy's own
// ports (the admin server, say) is closed, not passed on to 127.0.0.1, where
// the admin server would take it for a loopback client; another port is
// passed on.
func TestOwnPortsRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		own     bool
		reached bool
	}{
		{"the proxy's own port", true, false},
		{"an application port", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			accepted := make(chan struct{}, 1)
			go func() {
				c, err := app.Accept()
				if err != nil {
					return
				}
				accepted <- struct{}{}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				time.Sleep(100 * time.Millisecond)
				c.Close()
			}()
			port := uint16(app.Addr().(*net.TCPAddr).Port)
			o := Options{
				Log: slog.New(slog.DiscardHandler), Metrics: metrics.New(),
				OrigDst: origdst.Func(func(net.Conn) (netip.AddrPort, error) {
					return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), nil
				}),
				DetectTimeout: time.Second,
			}
			if tc.own {
				o.OwnPorts = []uint16{4140, port}
			}
			p := New(o)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = p.Serve(l) }()
			defer l.Close() // ends Serve; nothing here needs a drain

			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.WriteString(c, "POST /shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"); err != nil && tc.reached {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(c)
			select {
			case <-accepted:
				if !tc.reached {
					t.Fatalf("the request reached 127.0.0.1:%d (read %q)", port, b)
				}
			case <-time.After(300 * time.Millisecond):
				if tc.reached {
					t.Fatalf("the request did not reach 127.0.0.1:%d (read %q)", port, b)
				}
			}
		})
	}
}

// TestShutdownWhileServing: Shutdown may run while Serve sets up (SIGTERM at
// start): nothing orders them, and under -race nothing may race.
func TestShutdownWhileServing(t *testing.T) {
	servetest.ShutdownWhileServing(t, New(Options{Log: slog.New(slog.DiscardHandler), Metrics: metrics.New()}))
}
