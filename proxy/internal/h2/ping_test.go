package h2

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// pingPeer is a raw client of a Server over loopback TCP, past the
// SETTINGS exchange.
func pingPeer(t *testing.T) *http2.Framer {
	t.Helper()
	srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		// A body that tells it is there (as the proxy's upstream bodies
		// do, h2.BufferedBody): it leaves with the HEADERS.
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: 4, Body: readyBody{strings.NewReader("pong")}}, nil
	})}
	nc, err := net.Dial("tcp", serveLoopback(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nc, nc)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the SETTINGS ACK: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && sf.IsAck() {
			return fr
		}
	}
}

// TestPingAckAlone: on an idle connection a PING is acknowledged on its
// own, once ackDelay has passed without other frames to carry the ACK.
func TestPingAckAlone(t *testing.T) {
	fr := pingPeer(t)
	data := [8]byte{'a', 'l', 'o', 'n', 'e'}
	sent := time.Now()
	if err := fr.WritePing(false, data); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatalf("no PING ACK: %v", err)
	}
	pf, ok := f.(*http2.PingFrame)
	if !ok {
		t.Fatalf("got %v before the PING ACK on an idle connection", f.Header().Type)
	}
	if !pf.IsAck() || pf.Data != data {
		t.Fatalf("PING ack=%v data=%q, want the ACK of %q", pf.IsAck(), pf.Data, data)
	}
	if d := time.Since(sent); d < ackDelay {
		t.Errorf("ACK after %v, want it held for ackDelay (%v) when nothing else is written", d, ackDelay)
	}
}

// TestPingAckAfterResponse: a PING followed at once by a request is
// acknowledged after the response's frames, in the same write, so that a
// grpc-go peer's bandwidth probe does not start again on that response's
// DATA. The timer may win when the machine is slow, so the exchange is
// tried a few times; with ACKs written at once it never passes.
func TestPingAckAfterResponse(t *testing.T) {
	fr := pingPeer(t)
	for i := range 20 {
		id := uint32(2*i + 1)
		data := [8]byte{'p', byte(i)}
		if err := fr.WritePing(false, data); err != nil {
			t.Fatal(err)
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
			BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/")}); err != nil {
			t.Fatal(err)
		}
		// The frames of this exchange, until both the ACK and the end of
		// the response were read.
		var order []string
		acked, ended := false, false
		for !acked || !ended {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("exchange %d: %v (frames %v)", i, err, order)
			}
			switch f := f.(type) {
			case *http2.PingFrame:
				if !f.IsAck() || f.Data != data {
					t.Fatalf("exchange %d: PING ack=%v data=%q, want the ACK of %q", i, f.IsAck(), f.Data, data)
				}
				order, acked = append(order, "ack"), true
			case *http2.HeadersFrame:
				if f.StreamID == id {
					order = append(order, "headers")
				}
			case *http2.DataFrame:
				if f.StreamID == id && len(f.Data()) > 0 {
					order = append(order, "data")
				}
				ended = ended || f.StreamID == id && f.StreamEnded()
			}
		}
		// The ACK must come after the response's DATA: grpc-go starts a
		// probe on DATA read while none is out.
		if order[0] == "headers" && order[1] == "data" {
			return
		}
		t.Logf("exchange %d: frames %v (the timer won)", i, order)
	}
	t.Fatal("the PING ACK never followed the response: ACKs are not held for the next frames")
}

// TestPingAckBatch: ackBatch PINGs in a row are acknowledged at once
// rather than held for ackDelay. The timer cannot answer sooner than
// ackDelay, so an attempt that gets every ACK sooner shows the batch
// being written; a slow machine gets a few attempts.
func TestPingAckBatch(t *testing.T) {
	fr := pingPeer(t)
	for attempt := range 5 {
		sent := time.Now()
		for i := range ackBatch {
			if err := fr.WritePing(false, [8]byte{'b', byte(attempt), byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range ackBatch {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			pf, ok := f.(*http2.PingFrame)
			if want := [8]byte{'b', byte(attempt), byte(i)}; !ok || !pf.IsAck() || pf.Data != want {
				t.Fatalf("attempt %d: got %v, want the ACK of PING %q", attempt, f, want)
			}
		}
		d := time.Since(sent)
		if d < ackDelay {
			return
		}
		t.Logf("attempt %d: ACKs after %v", attempt, d)
	}
	t.Fatalf("%d PINGs in a row were held for ackDelay (%v)", ackBatch, ackDelay)
}

// TestPingAckDueWhileWriting: when the ACK's time comes while another
// goroutine holds the connection's writer, past its own control frames
// (here: wmu held, as during a flush blocked on a slow peer), that
// goroutine writes
// the ACK when it lets go. Left for the next frames, it would wait forever
// on a connection that goes idle, and the peer's keepalive would fail.
func TestPingAckDueWhileWriting(t *testing.T) {
	local, peer := net.Pipe()
	defer local.Close()
	defer peer.Close()
	c := &conn{}
	c.init(local, local, DefaultWriteTimeout)
	c.wmu.Lock() // a writer past its writeControl, still flushing
	data := [8]byte{'d', 'u', 'e'}
	c.ping(data)
	time.Sleep(3 * ackDelay) // the timer fires and finds wmu taken
	got := make(chan error, 1)
	go func() { // net.Pipe: a write waits for this read
		fr := http2.NewFramer(nil, peer)
		f, err := fr.ReadFrame()
		if err == nil {
			if pf, ok := f.(*http2.PingFrame); !ok || !pf.IsAck() || pf.Data != data {
				err = fmt.Errorf("got %v, want the ACK of %q", f, data)
			}
		}
		got <- err
	}()
	_ = local.SetWriteDeadline(time.Now().Add(time.Second))
	c.wmu.Unlock()
	c.kick() // what unlock does after letting go
	_ = peer.SetReadDeadline(time.Now().Add(time.Second))
	if err := <-got; err != nil {
		t.Fatalf("no PING ACK after the writer let go: %v", err)
	}
}

// readyBody is an in-memory body that says a read will not block.
type readyBody struct{ *strings.Reader }

func (readyBody) WouldBlock() bool { return false }
func (readyBody) Close() error     { return nil }
