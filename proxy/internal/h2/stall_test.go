package h2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// waitClosed fails the test unless nc is closed within d.
func waitClosed(t *testing.T, nc *noteClose, d time.Duration, what string) {
	t.Helper()
	select {
	case <-nc.closed:
	case <-time.After(d):
		t.Fatalf("%s: the connection to a peer that does not read was still open after %v", what, d)
	}
}

// settingsAcked reports the ACK of the peer's SETTINGS: the other end's
// opening frames are all read.
func settingsAcked(f frameSeen) bool { return f.typ == http2.FrameSettings && f.ack }

// TestStalledPeer: a peer that stops reading (its TCP window full; here a
// net.Pipe, which has no buffer at all) gets the connection closed once a
// write to it has waited WriteTimeout, whoever writes: the reader
// acknowledging the peer's SETTINGS, or a handler's response DATA. The
// reader goes on reading meanwhile. (The reader wrote the ACK itself, with
// no deadline: it stopped reading, and the connection stayed open, for
// ever.)
func TestStalledPeer(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name string
		// start sets up a connection and returns once the peer has
		// stopped reading: our next write to it waits.
		start func(t *testing.T) (*peer, *noteClose)
	}{
		{"server: the reader's SETTINGS ACK", func(t *testing.T) (*peer, *noteClose) {
			srv := &Server{WriteTimeout: timeout, Handler: okServer().Handler}
			p, nsc, _ := servePeer(t, srv, settingsAcked)
			p.next(t, "SETTINGS ACK", settingsAcked)
			return p, nsc
		}},
		{"client: the reader's SETTINGS ACK", func(t *testing.T) (*peer, *noteClose) {
			cc, sc := net.Pipe()
			ncc := newNoteClose(cc)
			cl := &Client{WriteTimeout: timeout, Dial: func(context.Context) (net.Conn, error) { return ncc, nil }}
			var head, ack bool
			p := newPeer(t, sc, true, func(f frameSeen) bool {
				head = head || f.typ == http2.FrameHeaders
				ack = ack || settingsAcked(f)
				return head && ack
			})
			go func() {
				req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
				if resp, err := cl.RoundTrip(req); err == nil {
					resp.Body.Close()
				}
			}()
			var sawHead, sawAck bool
			p.next(t, "the request's HEADERS and SETTINGS ACK", func(f frameSeen) bool {
				sawHead = sawHead || f.typ == http2.FrameHeaders
				sawAck = sawAck || settingsAcked(f)
				return sawHead && sawAck
			})
			<-p.hello
			// The request's writer is done: the ACK is the reader's to write.
			for deadline := time.Now().Add(5 * time.Second); ncc.writing.Load() > 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("a write still in progress after the peer read the request")
				}
			}
			return p, ncc
		}},
		{"server: a handler's response DATA", func(t *testing.T) (*peer, *noteClose) {
			srv := &Server{WriteTimeout: timeout, Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: -1,
					Body: io.NopCloser(io.LimitReader(zeros{}, 1<<20))}, nil
			})}
			p, nsc, _ := servePeer(t, srv, func(f frameSeen) bool { return f.typ == http2.FrameHeaders })
			_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
			p.next(t, "the response's HEADERS", func(f frameSeen) bool { return f.typ == http2.FrameHeaders })
			waitWriting(t, nsc)
			return p, nsc
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, nc := tc.start(t)
			// SETTINGS to acknowledge, and PINGs that the reader must read
			// on the way (each write on a net.Pipe waits for the other
			// end's read), until the connection is closed.
			_ = p.nc.SetWriteDeadline(time.Now().Add(timeout + 5*time.Second))
			for i := range 4 {
				var err error
				if i == 0 {
					err = p.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15})
				} else {
					err = p.fr.WritePing(false, [8]byte{byte(i)})
				}
				if err != nil {
					select {
					case <-nc.closed:
					default:
						t.Fatalf("frame %d: %v, and the connection is open: its reader stopped reading", i, err)
					}
					break
				}
			}
			waitClosed(t, nc, timeout+5*time.Second, "WriteTimeout "+timeout.String())
			close(p.resume)
		})
	}
}

// TestShutdownStalledPeers: Server.Shutdown returns at once, and the
// clients that read get their GOAWAY at once, however many connections
// have a peer that stopped reading; those are closed within goAwayTimeout.
// (Shutdown wrote each connection's GOAWAY in turn, from its own
// goroutine, with no deadline: the first stalled peer stopped it for ever.)
func TestShutdownStalledPeers(t *testing.T) {
	srv := &Server{WriteTimeout: time.Minute, Handler: okServer().Handler}
	var stalled []*noteClose
	for range 3 {
		p, nsc, _ := servePeer(t, srv, settingsAcked)
		p.next(t, "SETTINGS ACK", settingsAcked)
		stalled = append(stalled, nsc)
	}
	good, _, done := servePeer(t, srv, nil)
	good.next(t, "SETTINGS ACK", settingsAcked)

	shut := make(chan struct{})
	go func() {
		srv.Shutdown()
		close(shut)
	}()
	select {
	case <-shut:
	case <-time.After(time.Second):
		t.Fatal("Shutdown did not return within 1s with peers that do not read")
	}
	start := time.Now()
	ga := good.next(t, "GOAWAY", func(f frameSeen) bool { return f.typ == http2.FrameGoAway })
	if d := time.Since(start); d > time.Second {
		t.Errorf("the GOAWAY of a client that reads took %v", d)
	}
	if ga.code != http2.ErrCodeNo {
		t.Errorf("GOAWAY %v, want NO_ERROR", ga.code)
	}
	for i, nc := range stalled {
		waitClosed(t, nc, goAwayTimeout+5*time.Second, fmt.Sprintf("stalled peer %d", i))
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeConn of the client that reads: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("ServeConn of the client that reads did not return")
	}
}

// TestConnErrorGoAwayNotReset: a connection error's GOAWAY reaches a peer
// that is still sending when the server finds the error and a little late
// to read, over real TCP. The server's socket can queue the whole response
// (a large send buffer), the peer's cannot take it in (a small receive
// buffer, not read for a moment): the GOAWAY waits in the server's send
// queue behind DATA. (The server closed the connection at once, with the
// peer's frames unread in its receive buffer: the kernel sent RST instead of
// FIN and threw away the send queue, GOAWAY and all; the peer read what its
// buffer held, then ECONNRESET.)
func TestConnErrorGoAwayNotReset(t *testing.T) {
	const body = 1 << 20 // more than the peer's window, less than the server's send buffer
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: body,
			Body: io.NopCloser(io.LimitReader(zeros{}, body))}, nil
	})}
	served := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		_ = c.(*net.TCPConn).SetWriteBuffer(2 * body)
		served <- srv.ServeConn(context.Background(), c)
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.(*net.TCPConn).SetReadBuffer(64 << 10)
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	wfr := http2.NewFramer(nc, nil)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	_ = wfr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	_ = wfr.WriteWindowUpdate(0, 1<<30)
	_ = wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})

	gotHead, resume, stop := make(chan struct{}), make(chan struct{}), make(chan struct{})
	type result struct {
		goAway *frameSeen
		data   int
		err    error
	}
	read := make(chan result, 1)
	go func() {
		var res result
		defer func() { read <- res }()
		defer close(stop)
		rfr := http2.NewFramer(nil, nc)
		for {
			f, err := rfr.ReadFrame()
			if err != nil {
				res.err = err
				return
			}
			switch f := f.(type) {
			case *http2.HeadersFrame:
				close(gotHead)
				<-resume
			case *http2.DataFrame:
				res.data += len(f.Data())
			case *http2.GoAwayFrame:
				res.goAway = &frameSeen{typ: http2.FrameGoAway, code: f.ErrCode, last: f.LastStreamID, debug: string(f.DebugData())}
				return
			}
		}
	}()
	select {
	case <-gotHead:
	case <-time.After(10 * time.Second):
		t.Fatal("no response HEADERS")
	}
	// The peer keeps sending (frames of an unknown type, which the server
	// ignores), with the error among them: HEADERS on an even stream.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		junk := make([]byte, 1024)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var err error
			if i == 64 {
				err = wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
			} else {
				err = wfr.WriteRawFrame(0xf0, 0, 0, junk)
			}
			if err != nil {
				return
			}
		}
	}()
	// The peer reads again a moment later, after the server found the
	// error, and well within the time it gives the peer (lingerTimeout).
	time.Sleep(200 * time.Millisecond)
	close(resume)
	var res result
	select {
	case res = <-read:
	case <-time.After(15 * time.Second):
		t.Fatal("the peer's reader did not end")
	}
	_ = nc.Close()
	wg.Wait()
	switch {
	case res.goAway == nil:
		t.Errorf("the peer read %d bytes of DATA and %v, no GOAWAY", res.data, res.err)
	case res.goAway.code != http2.ErrCodeProtocol || res.data != body:
		t.Errorf("GOAWAY %v (%q) after %d bytes of DATA, want PROTOCOL_ERROR after %d", res.goAway.code, res.goAway.debug, res.data, body)
	}
	select {
	case err := <-served:
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("ServeConn: %v, want the connection error", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("ServeConn did not return")
	}
}
