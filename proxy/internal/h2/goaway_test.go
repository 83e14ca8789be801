package h2

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// noteClose is a net.Conn whose Close is reported on closed, and which
// counts the writes in progress.
type noteClose struct {
	net.Conn
	once    sync.Once
	closed  chan struct{}
	writing atomic.Int32
}

func newNoteClose(c net.Conn) *noteClose { return &noteClose{Conn: c, closed: make(chan struct{})} }

func (c *noteClose) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *noteClose) Write(p []byte) (int, error) {
	c.writing.Add(1)
	defer c.writing.Add(-1)
	return c.Conn.Write(p)
}

// waitWriting waits until a write is in progress on c: with the peer not
// reading, its writer holds the connection's write lock.
func waitWriting(t *testing.T, c *noteClose) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); c.writing.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no write in progress within 10s")
		}
	}
}

// frameSeen is what a peer read of one frame (the framer reuses its
// buffers, so frames are not passed on as they are).
type frameSeen struct {
	typ   http2.FrameType
	id    uint32 // stream
	end   bool   // END_STREAM
	ack   bool   // PING or SETTINGS ACK
	code  http2.ErrCode
	last  uint32 // GOAWAY's last stream
	debug string // GOAWAY's debug data
	incr  uint32 // WINDOW_UPDATE's increment
	n     int    // DATA's length
}

// peer is a hand-driven HTTP/2 end on one side of a net.Pipe, which has no
// buffer: a write on the other side waits until the peer reads it. Its
// reader passes what it reads on seen, closed at the end of the
// connection; after a frame for which hold reports true it stops reading
// until resume is closed.
type peer struct {
	nc     net.Conn
	fr     *http2.Framer // for writes from the test's goroutine, once hello is closed
	hello  chan struct{}
	seen   chan frameSeen
	resume chan struct{}
}

// newPeer starts a peer on nc. As a server (asServer), it reads the
// client's preface and then writes its SETTINGS and a connection
// WINDOW_UPDATE, from a goroutine of its own (the client's first write
// holds more than the preface, and ends only once the peer has read it
// all); it opens both windows to 1 GiB, so that a request body's writer
// is still writing when the peer stops reading.
func newPeer(t *testing.T, nc net.Conn, asServer bool, hold func(frameSeen) bool) *peer {
	t.Helper()
	p := &peer{nc: nc, fr: http2.NewFramer(nc, nil), hello: make(chan struct{}),
		seen: make(chan frameSeen, 4096), resume: make(chan struct{})}
	p.fr.AllowIllegalWrites = true
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	rfr := http2.NewFramer(nil, nc)
	go func() {
		defer close(p.seen)
		if asServer {
			pre := make([]byte, len(http2.ClientPreface))
			if _, err := io.ReadFull(nc, pre); err != nil {
				return
			}
			go func() {
				if p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}) == nil {
					_ = p.fr.WriteWindowUpdate(0, 1<<30)
				}
				close(p.hello)
			}()
		}
		for {
			f, err := rfr.ReadFrame()
			if err != nil {
				return
			}
			s := frameSeen{typ: f.Header().Type, id: f.Header().StreamID}
			switch f := f.(type) {
			case *http2.HeadersFrame:
				s.end = f.StreamEnded()
			case *http2.DataFrame:
				s.end, s.n = f.StreamEnded(), len(f.Data())
			case *http2.RSTStreamFrame:
				s.code = f.ErrCode
			case *http2.GoAwayFrame:
				s.code, s.last, s.debug = f.ErrCode, f.LastStreamID, string(f.DebugData())
			case *http2.WindowUpdateFrame:
				s.incr = f.Increment
			case *http2.PingFrame:
				s.ack = f.IsAck()
			case *http2.SettingsFrame:
				s.ack = f.IsAck()
			}
			p.seen <- s
			if hold != nil && hold(s) {
				hold = nil
				<-p.resume
			}
		}
	}()
	return p
}

// rest returns the frames read until the connection ended, failing the
// test if it has not ended within d.
func (p *peer) rest(t *testing.T, d time.Duration) []frameSeen {
	t.Helper()
	var fs []frameSeen
	timeout := time.After(d)
	for {
		select {
		case f, ok := <-p.seen:
			if !ok {
				return fs
			}
			fs = append(fs, f)
		case <-timeout:
			t.Fatalf("the connection did not end within %v; read %+v", d, fs)
		}
	}
}

// next returns the next frame for which match reports true.
func (p *peer) next(t *testing.T, what string, match func(frameSeen) bool) frameSeen {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-p.seen:
			if !ok {
				t.Fatalf("the connection ended; want %s", what)
			}
			if match(f) {
				return f
			}
		case <-timeout:
			t.Fatalf("no %s within 10s", what)
		}
	}
}

// servePeer serves srv on a pipe and returns the client's end as a peer,
// the preface and an empty SETTINGS sent, the server's end, and
// ServeConn's result.
func servePeer(t *testing.T, srv *Server, hold func(frameSeen) bool) (*peer, *noteClose, <-chan error) {
	t.Helper()
	cc, sc := net.Pipe()
	nsc := newNoteClose(sc)
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), nsc) }()
	p := newPeer(t, cc, false, hold)
	if _, err := cc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	close(p.hello)
	return p, nsc, done
}

// wantGoAwayFirst checks that fs has a GOAWAY with code and last, and
// that it is the first GOAWAY.
func wantGoAwayFirst(t *testing.T, fs []frameSeen, code http2.ErrCode, last uint32) {
	t.Helper()
	for _, f := range fs {
		if f.typ != http2.FrameGoAway {
			continue
		}
		if f.code != code || f.last != last {
			t.Errorf("GOAWAY %v last stream %d (%q), want %v last stream %d", f.code, f.last, f.debug, code, last)
		} else if f.debug == "" {
			t.Errorf("GOAWAY %v without debug data, want the error's text", f.code)
		}
		return
	}
	t.Errorf("the connection ended without GOAWAY (read %d frames), want GOAWAY %v", len(fs), code)
}

// TestGoAwayBehindBusyWriter: a connection error found while a stream's
// writer holds the connection, its write waiting for the peer to read, is
// still answered with GOAWAY before the connection closes; and a peer that
// never reads again does not keep the connection open past goAwayTimeout.
// (Queued behind the writer, the GOAWAY was lost when the reader closed the
// connection: the peer saw the DATA cut short and EOF.)
func TestGoAwayBehindBusyWriter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reads bool // the peer reads again after the error
	}{
		{"peer reads on", true},
		{"peer never reads again", false},
	} {
		t.Run(tc.name+"/server", func(t *testing.T) {
			srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: -1,
					Body: io.NopCloser(io.LimitReader(zeros{}, 1<<20))}, nil
			})}
			// The peer stops reading at the response's HEADERS: the
			// handler's DATA write waits, holding the connection.
			p, nsc, done := servePeer(t, srv, func(f frameSeen) bool { return f.typ == http2.FrameHeaders })
			_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
			p.next(t, "the response's HEADERS", func(f frameSeen) bool { return f.typ == http2.FrameHeaders })
			waitWriting(t, nsc)
			// HEADERS on an even stream from a client: PROTOCOL_ERROR (RFC 9113 5.1.1).
			if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)}); err != nil {
				t.Fatal(err)
			}
			checkGoAwayBehindWriter(t, p, nsc, tc.reads, http2.ErrCodeProtocol, 1)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("ServeConn did not return")
			}
		})
		t.Run(tc.name+"/client", func(t *testing.T) {
			cc, sc := net.Pipe()
			ncc := newNoteClose(cc)
			cl := &Client{Dial: func(context.Context) (net.Conn, error) { return ncc, nil }}
			// The server stops reading once it has the request's HEADERS:
			// the client's body write waits, holding the connection. (Not
			// before the client's SETTINGS ACK, which its reader would
			// wait to write; the body is long enough to be still going
			// out then.)
			var head, ack bool
			p := newPeer(t, sc, true, func(f frameSeen) bool {
				head = head || f.typ == http2.FrameHeaders
				ack = ack || (f.typ == http2.FrameSettings && f.ack)
				return head && ack
			})
			req, _ := http.NewRequest(http.MethodPost, "http://svc/up", io.NopCloser(io.LimitReader(zeros{}, 64<<20)))
			req.ContentLength = -1
			rt := make(chan error, 1)
			go func() {
				resp, err := cl.RoundTrip(req)
				if err == nil {
					resp.Body.Close()
				}
				rt <- err
			}()
			var sawHead, sawAck bool
			p.next(t, "the request's HEADERS and SETTINGS ACK", func(f frameSeen) bool {
				sawHead = sawHead || f.typ == http2.FrameHeaders
				sawAck = sawAck || (f.typ == http2.FrameSettings && f.ack)
				return sawHead && sawAck
			})
			<-p.hello
			waitWriting(t, ncc)
			// A connection window above 2^31-1: FLOW_CONTROL_ERROR (RFC 9113 6.9.1).
			if err := p.fr.WriteWindowUpdate(0, 1<<31-1); err != nil {
				t.Fatal(err)
			}
			checkGoAwayBehindWriter(t, p, ncc, tc.reads, http2.ErrCodeFlowControl, 0)
			select {
			case err := <-rt:
				if err == nil || !strings.HasPrefix(err.Error(), "h2: ") {
					t.Errorf("RoundTrip: %v, want an h2 error", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("RoundTrip did not return")
			}
		})
	}
}

// checkGoAwayBehindWriter waits for the other end to close the connection
// or for 200 ms, then has the peer read again (reads) and wants the GOAWAY
// before EOF; or wants the connection closed within goAwayTimeout and a
// margin without reading again.
func checkGoAwayBehindWriter(t *testing.T, p *peer, nc *noteClose, reads bool, code http2.ErrCode, last uint32) {
	t.Helper()
	if !reads {
		select {
		case <-nc.closed:
		case <-time.After(goAwayTimeout + 5*time.Second):
			t.Fatalf("a peer that does not read kept the connection open past %v", goAwayTimeout+5*time.Second)
		}
		close(p.resume)
		return
	}
	select {
	case <-nc.closed:
	case <-time.After(200 * time.Millisecond):
	}
	close(p.resume)
	wantGoAwayFirst(t, p.rest(t, 10*time.Second), code, last)
}

// TestShutdownGoAway: Server.Shutdown sends one GOAWAY (NO_ERROR) naming
// the last stream the client opened; a stream the client opens after it is
// refused (REFUSED_STREAM), so the client may send it elsewhere, and the
// stream in flight finishes. A GOAWAY after that, for a connection error,
// names no later stream than the first (RFC 9113 6.8: the client may have
// retried the streams above it already).
func TestShutdownGoAway(t *testing.T) {
	for _, tc := range []struct {
		name      string
		connError bool // a connection error follows the graceful GOAWAY
	}{
		{"the last stream ends", false},
		{"then a connection error", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started, release := make(chan struct{}, 1), make(chan struct{})
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
				started <- struct{}{}
				<-release
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
			})}
			p, _, done := servePeer(t, srv, nil)
			_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("the handler did not start")
			}
			srv.Shutdown()
			ga := p.next(t, "GOAWAY", func(f frameSeen) bool { return f.typ == http2.FrameGoAway })
			if ga.code != http2.ErrCodeNo || ga.last != 1 {
				t.Fatalf("Shutdown's GOAWAY: %v last stream %d, want NO_ERROR last stream 1", ga.code, ga.last)
			}
			// Sent before the client saw the GOAWAY.
			_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
			rst := p.next(t, "RST_STREAM", func(f frameSeen) bool { return f.typ == http2.FrameRSTStream })
			if rst.id != 3 || rst.code != http2.ErrCodeRefusedStream {
				t.Errorf("RST_STREAM %d %v, want stream 3 REFUSED_STREAM", rst.id, rst.code)
			}
			if tc.connError {
				_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 4, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
				wantGoAwayFirst(t, p.rest(t, 10*time.Second), http2.ErrCodeProtocol, 1)
				return
			}
			close(release)
			fs := p.rest(t, 10*time.Second)
			var ended bool
			for _, f := range fs {
				switch {
				case f.typ == http2.FrameHeaders && f.id == 1:
					ended = f.end
				case f.typ == http2.FrameGoAway:
					t.Errorf("a second GOAWAY %v last stream %d", f.code, f.last)
				}
			}
			if !ended {
				t.Errorf("stream 1's response did not end before the connection closed: %+v", fs)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("ServeConn: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ServeConn did not return")
			}
		})
	}
}

// TestResetStreamReturnsConnWindow: DATA received on a stream that is then
// reset, unread, still counts against the connection's window, and goes
// back to the peer (RFC 9113 6.9), as the frame that overran a stream's
// window does: with nothing held for a reader, the server keeps back less
// than the quarter window it batches updates by. Each case sends just
// enough to cross that quarter with its last stream.
func TestResetStreamReturnsConnWindow(t *testing.T) {
	chunk := make([]byte, maxFrame)
	for _, tc := range []struct {
		name    string
		streams int
		send    func(fr *http2.Framer, id uint32) int // returns the DATA bytes sent
	}{
		{"the server resets a stream past its window", 64, func(fr *http2.Framer, id uint32) int {
			// The initial window is 65,535 bytes: the fourth frame overruns
			// it by one.
			for range 4 {
				_ = fr.WriteData(id, false, chunk)
			}
			return 4 * maxFrame
		}},
		{"the client resets a stream with unread DATA", 86, func(fr *http2.Framer, id uint32) int {
			for range 3 {
				_ = fr.WriteData(id, false, chunk)
			}
			_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
			return 3 * maxFrame
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The handlers never read the body, and are slow to see their
			// streams reset (an upstream that does not heed the context).
			release := make(chan struct{})
			srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
				<-release
				return nil, errors.New("released")
			})}
			p, _, _ := servePeer(t, srv, nil)
			defer close(release)
			sent := 0
			for i := range tc.streams {
				id := uint32(2*i + 1)
				_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
					BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/up")})
				sent += tc.send(p.fr, id)
			}
			_ = p.fr.WritePing(false, [8]byte{1})
			// The PING's ACK follows the updates due for the frames before
			// it; the first update is the server's opening of its window.
			returned := -(connWindow - initialWindow)
			p.next(t, "PING ACK", func(f frameSeen) bool {
				if f.typ == http2.FrameWindowUpdate && f.id == 0 {
					returned += int(f.incr)
				}
				return f.typ == http2.FramePing && f.ack
			})
			if kept := sent - returned; kept >= connWindow/4 {
				t.Errorf("sent %d bytes of DATA on streams reset unread, %d returned: %d kept back, want under %d", sent, returned, kept, connWindow/4)
			}
		})
	}
}

// TestInitialWindowOverflow: a SETTINGS_INITIAL_WINDOW_SIZE that takes an
// open stream's send window (the setting plus the WINDOW_UPDATEs the
// stream got beyond what it sent) past 2^31-1 is a connection error
// FLOW_CONTROL_ERROR (RFC 9113 6.9.2); one that does not is applied.
func TestInitialWindowOverflow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		update uint32 // the stream's WINDOW_UPDATE before the SETTINGS
		init   uint32
		code   http2.ErrCode // want GOAWAY with it; ErrCodeNo: the connection goes on
	}{
		{"past the limit", 1000, 1<<31 - 1, http2.ErrCodeFlowControl},
		{"up to the limit", 1000, 1<<31 - 1 - 1000, http2.ErrCodeNo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
				<-release
				return nil, errors.New("released")
			})}
			p, _, _ := servePeer(t, srv, nil)
			_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
			_ = p.fr.WriteWindowUpdate(1, tc.update)
			_ = p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: tc.init})
			_ = p.fr.WritePing(false, [8]byte{2})
			var got *frameSeen
			p.next(t, "PING ACK or GOAWAY", func(f frameSeen) bool {
				if f.typ == http2.FrameGoAway {
					got = &f
				}
				return f.typ == http2.FrameGoAway || f.typ == http2.FramePing && f.ack
			})
			switch {
			case tc.code == http2.ErrCodeNo && got != nil:
				t.Errorf("GOAWAY %v (%q), want the connection to go on", got.code, got.debug)
			case tc.code != http2.ErrCodeNo && got == nil:
				t.Errorf("the connection went on, want GOAWAY %v", tc.code)
			case got != nil && got.code != tc.code:
				t.Errorf("GOAWAY %v (%q), want %v", got.code, got.debug, tc.code)
			}
		})
	}
}

// TestClientGoAway: a server's GOAWAY fails the streams above its last
// stream as unprocessed (marked netx.ErrUnsent once no other connection
// takes them), and lets the ones up to it finish; when the server then
// closes the connection on them, their error carries the GOAWAY's code and
// debug data, not a bare EOF.
func TestClientGoAway(t *testing.T) {
	for _, tc := range []struct {
		name  string
		code  http2.ErrCode
		debug string
	}{
		{"graceful, then the response", http2.ErrCodeNo, ""},
		{"an error, then the close", http2.ErrCodeProtocol, "bad frame on stream 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			var dials atomic.Int32
			cl := &Client{Dial: func(context.Context) (net.Conn, error) {
				if dials.Add(1) > 1 {
					return nil, errors.New("no other server")
				}
				return cc, nil
			}}
			p := newPeer(t, sc, true, nil)
			type result struct {
				resp *http.Response
				err  error
			}
			send := func(path string) <-chan result {
				ch := make(chan result, 1)
				req, _ := http.NewRequest(http.MethodGet, "http://svc"+path, nil)
				go func() {
					resp, err := cl.RoundTrip(req)
					ch <- result{resp, err}
				}()
				return ch
			}
			first := send("/1")
			p.next(t, "stream 1's HEADERS", func(f frameSeen) bool { return f.typ == http2.FrameHeaders && f.id == 1 })
			second := send("/3")
			p.next(t, "stream 3's HEADERS", func(f frameSeen) bool { return f.typ == http2.FrameHeaders && f.id == 3 })
			<-p.hello
			_ = p.fr.WriteGoAway(1, tc.code, []byte(tc.debug))
			if tc.code == http2.ErrCodeNo {
				_ = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(":status", "200")})
			} else {
				_ = sc.Close()
			}
			wait := func(ch <-chan result) result {
				select {
				case r := <-ch:
					return r
				case <-time.After(10 * time.Second):
					t.Fatal("RoundTrip did not return")
				}
				return result{}
			}
			r3 := wait(second)
			if !errors.Is(r3.err, netx.ErrUnsent) {
				t.Errorf("stream 3, above the GOAWAY: %v, want an error marked unsent", r3.err)
			}
			r1 := wait(first)
			if tc.code == http2.ErrCodeNo {
				if r1.err != nil || r1.resp.StatusCode != 200 {
					t.Errorf("stream 1, up to the GOAWAY: %v %v, want its 200", r1.resp, r1.err)
				}
				return
			}
			var ga *goAwayError
			switch {
			case r1.err == nil:
				t.Errorf("stream 1 got a response (%d) from a closed connection", r1.resp.StatusCode)
			case errors.Is(r1.err, netx.ErrUnsent) || errors.Is(r1.err, ErrRefused):
				t.Errorf("stream 1, up to the GOAWAY: %v, marked unprocessed", r1.err)
			case !errors.As(r1.err, &ga) || ga.code != tc.code || ga.debug != tc.debug:
				t.Errorf("stream 1: %v, want the GOAWAY's %v and %q", r1.err, tc.code, tc.debug)
			default:
				t.Logf("stream 1: %v", r1.err)
			}
		})
	}
}
