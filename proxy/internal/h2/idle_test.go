package h2

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestDataOnIdleStream: DATA on a stream that was never opened (an odd one
// above the highest the client opened, or an even one, which only a
// server's push would open) is a connection error PROTOCOL_ERROR (RFC 9113
// 5.1, 6.1), at both ends; DATA on a stream that was opened and has ended
// is not, and its flow-control window is given back. (Both were taken for
// a closed stream's late DATA: ignored, the window returned.)
func TestDataOnIdleStream(t *testing.T) {
	chunk := make([]byte, maxFrame)
	ping := func(f frameSeen) bool { return f.typ == http2.FramePing && f.ack }
	for _, tc := range []struct {
		name     string
		server   bool   // a server's connection; else a client's
		stream   uint32 // DATA on it
		frames   int    // of maxFrame bytes each
		goAway   bool   // want GOAWAY PROTOCOL_ERROR; else the window back and the connection open
		wantLast uint32 // the GOAWAY's last stream
	}{
		{"server: odd stream above the last opened", true, 5, 1, true, 1},
		{"server: even stream", true, 2, 1, true, 1},
		{"server: closed stream", true, 1, connWindow / 4 / maxFrame, false, 0},
		{"client: odd stream above the last opened", false, 5, 1, true, 0},
		{"client: even stream", false, 2, 1, true, 0},
		{"client: closed stream", false, 1, connWindow / 4 / maxFrame, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p *peer
			if tc.server {
				pp, _, _ := servePeer(t, okServer(), nil)
				p = pp
				_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
				p.next(t, "stream 1's response", func(f frameSeen) bool { return f.id == 1 && f.end })
			} else {
				cc, sc := net.Pipe()
				cl := &Client{Dial: func(context.Context) (net.Conn, error) { return cc, nil }}
				p = newPeer(t, sc, true, nil)
				done := make(chan error, 1)
				go func() {
					req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
					resp, err := cl.RoundTrip(req)
					if err == nil {
						resp.Body.Close()
					}
					done <- err
				}()
				p.next(t, "stream 1's HEADERS", func(f frameSeen) bool { return f.typ == http2.FrameHeaders && f.id == 1 })
				<-p.hello
				_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(":status", "200")})
				select {
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("RoundTrip did not return")
				}
			}
			for range tc.frames {
				if err := p.fr.WriteData(tc.stream, false, chunk); err != nil {
					t.Fatal(err)
				}
			}
			_ = p.fr.WritePing(false, [8]byte{7})
			if tc.goAway {
				wantGoAwayFirst(t, p.rest(t, 10*time.Second), http2.ErrCodeProtocol, tc.wantLast)
				return
			}
			returned := 0
			p.next(t, "PING ACK", func(f frameSeen) bool {
				switch {
				case f.typ == http2.FrameGoAway:
					t.Fatalf("GOAWAY %v (%q), want the connection to go on", f.code, f.debug)
				case f.typ == http2.FrameWindowUpdate && f.id == 0 && f.incr < connWindow-initialWindow:
					returned += int(f.incr)
				}
				return ping(f)
			})
			if sent := tc.frames * maxFrame; returned < sent {
				t.Errorf("sent %d bytes of DATA on a closed stream, %d returned", sent, returned)
			}
		})
	}
}
