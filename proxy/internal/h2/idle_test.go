package h2

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestFrameOnIdleStream: a frame other than HEADERS or PRIORITY on a stream
// that was never opened (an odd one above the highest the client opened,
// or an even one, which only a server's push would open) is a connection
// error PROTOCOL_ERROR (RFC 9113 5.1: DATA 6.1, RST_STREAM 6.4,
// WINDOW_UPDATE 6.9), at both ends; on a stream that was opened and has
// ended, or that a higher stream closed (5.1.1), DATA is dropped with its
// flow-control window given back, and RST_STREAM and WINDOW_UPDATE are
// ignored (5.1, 6.9). PRIORITY may name any stream, even an idle one, and
// leaves it idle (5.1, 6.3). A request on a stream not above the highest
// the client opened is PROTOCOL_ERROR (5.1.1); a server cannot open a
// stream with HEADERS, so a client treats HEADERS on an idle stream as
// PROTOCOL_ERROR too. (RST_STREAM, WINDOW_UPDATE and HEADERS on idle
// streams were ignored, and a WINDOW_UPDATE of 0 on one was answered with
// RST_STREAM, itself not allowed on an idle stream, as if it were open.)
//
// A PRIORITY frame, or HEADERS with a priority, naming its own stream as
// its dependency is a stream error PROTOCOL_ERROR (5.3.1), whatever the
// stream's state: RST_STREAM on it, and the connection goes on (they were
// ignored, and such a request served).
func TestFrameOnIdleStream(t *testing.T) {
	chunk := make([]byte, maxFrame)
	ping := func(f frameSeen) bool { return f.typ == http2.FramePing && f.ack }
	for _, tc := range []struct {
		name   string
		server bool            // a server's connection; else a client's
		open   uint32          // server: a stream the client opens after stream 1 (0: none)
		typ    http2.FrameType // sent on stream
		stream uint32
		frames int    // DATA: how many, of maxFrame bytes each
		incr   uint32 // WINDOW_UPDATE's increment
		dep    uint32 // PRIORITY's, or HEADERS' (then with a priority), dependency
		rst    bool   // want RST_STREAM PROTOCOL_ERROR on stream, the connection to go on
		goAway bool   // want GOAWAY PROTOCOL_ERROR; else the connection to go on (and the window of DATA back)
		last   uint32 // the GOAWAY's last stream
		then   uint32 // server, going on: a request on this stream is then answered (0: none)
	}{
		{name: "server: DATA on odd stream above the last opened", server: true, typ: http2.FrameData, stream: 5, frames: 1, goAway: true, last: 1},
		{name: "server: DATA on even stream", server: true, typ: http2.FrameData, stream: 2, frames: 1, goAway: true, last: 1},
		{name: "server: DATA on closed stream", server: true, typ: http2.FrameData, stream: 1, frames: connWindow / 4 / maxFrame, then: 3},
		{name: "server: DATA on stream skipped", server: true, open: 5, typ: http2.FrameData, stream: 3, frames: connWindow / 4 / maxFrame, then: 7},
		{name: "server: RST_STREAM on odd stream above the last opened", server: true, typ: http2.FrameRSTStream, stream: 5, goAway: true, last: 1},
		{name: "server: RST_STREAM on even stream", server: true, typ: http2.FrameRSTStream, stream: 2, goAway: true, last: 1},
		{name: "server: RST_STREAM on closed stream", server: true, typ: http2.FrameRSTStream, stream: 1, then: 3},
		{name: "server: RST_STREAM on stream skipped", server: true, open: 5, typ: http2.FrameRSTStream, stream: 3, then: 7},
		{name: "server: WINDOW_UPDATE on odd stream above the last opened", server: true, typ: http2.FrameWindowUpdate, stream: 5, incr: 1, goAway: true, last: 1},
		{name: "server: WINDOW_UPDATE on even stream", server: true, typ: http2.FrameWindowUpdate, stream: 2, incr: 1, goAway: true, last: 1},
		{name: "server: WINDOW_UPDATE of 0 on idle stream", server: true, typ: http2.FrameWindowUpdate, stream: 5, incr: 0, goAway: true, last: 1},
		{name: "server: WINDOW_UPDATE on closed stream", server: true, typ: http2.FrameWindowUpdate, stream: 1, incr: 1, then: 3},
		{name: "server: WINDOW_UPDATE on stream skipped", server: true, open: 5, typ: http2.FrameWindowUpdate, stream: 3, incr: 1, then: 7},
		{name: "server: PRIORITY on idle stream, then opened", server: true, typ: http2.FramePriority, stream: 5, then: 5},
		{name: "server: PRIORITY on even stream", server: true, typ: http2.FramePriority, stream: 2, then: 3},
		{name: "server: PRIORITY on closed stream", server: true, typ: http2.FramePriority, stream: 1, then: 3},
		{name: "server: PRIORITY depending on itself, idle stream", server: true, typ: http2.FramePriority, stream: 5, dep: 5, rst: true, then: 7},
		{name: "server: PRIORITY depending on itself, closed stream", server: true, typ: http2.FramePriority, stream: 1, dep: 1, rst: true, then: 3},
		{name: "server: PRIORITY depending on itself, even stream", server: true, typ: http2.FramePriority, stream: 2, dep: 2, rst: true, then: 3},
		{name: "server: request with a priority on another stream", server: true, typ: http2.FrameHeaders, stream: 3, dep: 1, then: 5},
		{name: "server: request depending on itself", server: true, typ: http2.FrameHeaders, stream: 3, dep: 3, rst: true, then: 5},
		{name: "server: request on closed stream", server: true, typ: http2.FrameHeaders, stream: 1, goAway: true, last: 1},
		{name: "server: request on stream skipped", server: true, open: 5, typ: http2.FrameHeaders, stream: 3, goAway: true, last: 5},
		{name: "client: DATA on odd stream above the last opened", typ: http2.FrameData, stream: 5, frames: 1, goAway: true},
		{name: "client: DATA on even stream", typ: http2.FrameData, stream: 2, frames: 1, goAway: true},
		{name: "client: DATA on closed stream", typ: http2.FrameData, stream: 1, frames: connWindow / 4 / maxFrame},
		{name: "client: RST_STREAM on odd stream above the last opened", typ: http2.FrameRSTStream, stream: 3, goAway: true},
		{name: "client: RST_STREAM on even stream", typ: http2.FrameRSTStream, stream: 2, goAway: true},
		{name: "client: RST_STREAM on closed stream", typ: http2.FrameRSTStream, stream: 1},
		{name: "client: WINDOW_UPDATE on odd stream above the last opened", typ: http2.FrameWindowUpdate, stream: 3, incr: 1, goAway: true},
		{name: "client: WINDOW_UPDATE on even stream", typ: http2.FrameWindowUpdate, stream: 2, incr: 1, goAway: true},
		{name: "client: WINDOW_UPDATE of 0 on idle stream", typ: http2.FrameWindowUpdate, stream: 3, incr: 0, goAway: true},
		{name: "client: WINDOW_UPDATE on closed stream", typ: http2.FrameWindowUpdate, stream: 1, incr: 1},
		{name: "client: PRIORITY on idle stream", typ: http2.FramePriority, stream: 3},
		{name: "client: PRIORITY on even stream", typ: http2.FramePriority, stream: 2},
		{name: "client: PRIORITY on closed stream", typ: http2.FramePriority, stream: 1},
		{name: "client: PRIORITY depending on itself, idle stream", typ: http2.FramePriority, stream: 3, dep: 3, rst: true},
		{name: "client: PRIORITY depending on itself, closed stream", typ: http2.FramePriority, stream: 1, dep: 1, rst: true},
		{name: "client: HEADERS on odd stream above the last opened", typ: http2.FrameHeaders, stream: 3, goAway: true},
		{name: "client: HEADERS on even stream", typ: http2.FrameHeaders, stream: 2, goAway: true},
		{name: "client: HEADERS on closed stream", typ: http2.FrameHeaders, stream: 1},
		{name: "client: HEADERS depending on itself on closed stream", typ: http2.FrameHeaders, stream: 1, dep: 1, rst: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // a connection error's linger takes a second
			var p *peer
			// request has the server answer a request on stream id.
			request := func(id uint32) {
				t.Helper()
				_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
				p.next(t, "the response", func(f frameSeen) bool {
					if f.typ == http2.FrameGoAway || f.typ == http2.FrameRSTStream {
						t.Fatalf("%v %v on stream %d (%q), want stream %d answered", f.typ, f.code, f.id, f.debug, id)
					}
					return f.id == id && f.end
				})
			}
			headers := getFields // what the peer sends in HEADERS
			if tc.server {
				pp, _, _ := servePeer(t, okServer(), nil)
				p = pp
				request(1)
				if tc.open != 0 {
					request(tc.open)
				}
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
				headers = []string{":status", "200"}
				_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(headers...)})
				select {
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("RoundTrip did not return")
				}
			}
			var err error
			switch tc.typ {
			case http2.FrameData:
				for i := 0; i < tc.frames && err == nil; i++ {
					err = p.fr.WriteData(tc.stream, false, chunk)
				}
			case http2.FrameRSTStream:
				err = p.fr.WriteRSTStream(tc.stream, http2.ErrCodeCancel)
			case http2.FrameWindowUpdate:
				err = p.fr.WriteWindowUpdate(tc.stream, tc.incr)
			case http2.FramePriority:
				err = p.fr.WritePriority(tc.stream, http2.PriorityParam{StreamDep: tc.dep, Weight: 15})
			case http2.FrameHeaders:
				hp := http2.HeadersFrameParam{StreamID: tc.stream, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(headers...)}
				if tc.dep != 0 {
					hp.Priority = http2.PriorityParam{StreamDep: tc.dep, Weight: 15}
				}
				err = p.fr.WriteHeaders(hp)
			default:
				t.Fatalf("no case for %v", tc.typ)
			}
			if err != nil {
				t.Fatal(err)
			}
			_ = p.fr.WritePing(false, [8]byte{7})
			if tc.goAway {
				wantGoAwayFirst(t, p.rest(t, 10*time.Second), http2.ErrCodeProtocol, tc.last)
				return
			}
			returned, reset := 0, false
			p.next(t, "PING ACK", func(f frameSeen) bool {
				switch {
				case f.typ == http2.FrameGoAway:
					t.Fatalf("GOAWAY %v (%q), want the connection to go on", f.code, f.debug)
				case tc.rst && f.id == tc.stream && f.typ == http2.FrameRSTStream:
					if f.code != http2.ErrCodeProtocol {
						t.Fatalf("RST_STREAM %v on stream %d, want PROTOCOL_ERROR", f.code, f.id)
					}
					reset = true
				case tc.rst && f.id == tc.stream && f.typ == http2.FrameHeaders:
					t.Fatalf("stream %d answered, want it reset", f.id)
				case f.typ == http2.FrameRSTStream && (tc.typ != http2.FrameData || f.id != tc.stream):
					// (DATA on a stream that has ended may find it not
					// forgotten yet, and be answered STREAM_CLOSED.)
					t.Fatalf("RST_STREAM %v on stream %d, want none", f.code, f.id)
				case f.typ == http2.FrameWindowUpdate && f.id == 0 && f.incr < connWindow-initialWindow:
					returned += int(f.incr)
				}
				return ping(f)
			})
			if tc.rst && !reset {
				t.Errorf("no RST_STREAM on stream %d before the PING ACK", tc.stream)
			}
			if sent := tc.frames * maxFrame; returned < sent {
				t.Errorf("sent %d bytes of DATA on a closed stream, %d returned", sent, returned)
			}
			if tc.then != 0 {
				request(tc.then)
			}
		})
	}
}

// TestResponseDependingOnItself: a response whose HEADERS name its own
// stream as their dependency is a stream error PROTOCOL_ERROR (RFC 9113
// 5.3.1): the request fails and its stream is reset; the connection goes
// on. (It was taken as the response.)
func TestResponseDependingOnItself(t *testing.T) {
	cc, sc := net.Pipe()
	cl := &Client{Dial: func(context.Context) (net.Conn, error) { return cc, nil }}
	p := newPeer(t, sc, true, nil)
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
	_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true,
		BlockFragment: headerBlock(":status", "200"), Priority: http2.PriorityParam{StreamDep: 1, Weight: 15}})
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("RoundTrip succeeded, want an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RoundTrip did not return")
	}
	_ = p.fr.WritePing(false, [8]byte{7})
	reset := false
	p.next(t, "PING ACK", func(f frameSeen) bool {
		switch {
		case f.typ == http2.FrameGoAway:
			t.Fatalf("GOAWAY %v (%q), want the connection to go on", f.code, f.debug)
		case f.typ == http2.FrameRSTStream:
			if f.id != 1 || f.code != http2.ErrCodeProtocol {
				t.Fatalf("RST_STREAM %v on stream %d, want PROTOCOL_ERROR on 1", f.code, f.id)
			}
			reset = true
		}
		return f.typ == http2.FramePing && f.ack
	})
	if !reset {
		t.Error("no RST_STREAM on stream 1")
	}
}
