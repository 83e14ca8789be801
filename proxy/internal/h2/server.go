package h2

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// Server serves HTTP/2 connections whose TLS (or h2c prior-knowledge)
// set-up is done: each request is passed to Handler, in a goroutine of its
// own, and the response it returns is written back. A Handler error is
// answered 502 (504 for a deadline) with the header conduit-proxy-error.
// ErrRefuse, wrapped in a Handler's error, answers the request with
// RST_STREAM(REFUSED_STREAM) instead of a 502: the handler did not process
// it (RFC 9113 §8.7), so the client may send it again, elsewhere.
var ErrRefuse = errors.New("h2: request refused unprocessed")

type Server struct {
	Handler http.RoundTripper
	// MaxConcurrentStreams advertised to clients (default 1000).
	MaxConcurrentStreams uint32
	// IdleTimeout closes a connection without streams for longer (default 10 min).
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to a connection (default
	// DefaultWriteTimeout); see DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Log receives what the server has no one else to tell (default
	// slog.Default()).
	Log *slog.Logger

	mu    sync.Mutex
	conns map[*serverConn]struct{}
	shut  bool
	// noResponse: a handler returned neither a response nor an error
	// (logged once).
	noResponse sync.Once
}

type serverConn struct {
	conn
	srv  *Server
	ctx  context.Context
	wg   sync.WaitGroup
	addr string
	// ownCtx: ctx is never canceled (Done nil), so a request's context can
	// be its stream's netx.AbortCtx, with ctx's values (see serverStream).
	ownCtx bool

	// Under mu.
	lastID  uint32 // highest stream opened by the client
	running int    // handlers running: a reset stream's may outlive it
}

func (s *Server) maxStreams() uint32 {
	if s.MaxConcurrentStreams > 0 {
		return s.MaxConcurrentStreams
	}
	return 1000
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return DefaultWriteTimeout
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return 10 * time.Minute
}

// ServeConn serves c until the client closes it, a protocol error, or
// Shutdown; each request's context derives from ctx and is cancelled when
// its stream is reset or the connection ends. It returns once the
// connection's handlers have returned.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	defer c.Close()
	br := bufio.NewReaderSize(c, bufSize)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil {
		return fmt.Errorf("h2: read client preface: %w", err)
	}
	if string(pre[:]) != http2.ClientPreface {
		return errors.New("h2: bad client preface")
	}
	_ = c.SetReadDeadline(time.Time{})
	sc := &serverConn{srv: s, ctx: ctx, addr: c.RemoteAddr().String(), ownCtx: ctx.Done() == nil}
	if sc.ownCtx {
		// The streams' own contexts find the connection's Interim
		// through their parent.
		sc.ctx = netx.WithInterim(ctx, sc)
	}
	sc.init(c, br, s.writeTimeout())
	sc.onClosed = sc.streamClosed
	sc.lock()
	sc.werr = sc.wfr.WriteSettings(
		// No SETTINGS_INITIAL_WINDOW_SIZE: a stream's window stays the
		// protocol's initial one until its handler reads (stream.narrow).
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: s.maxStreams()},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList})
	if sc.werr == nil {
		sc.werr = sc.wfr.WriteWindowUpdate(0, connWindow-initialWindow)
	}
	sc.unlock()

	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*serverConn]struct{}{}
	}
	s.conns[sc] = struct{}{}
	shut := s.shut
	s.mu.Unlock()
	sc.mu.Lock()
	sc.idle = time.AfterFunc(s.idleTimeout(), sc.idleExpired)
	sc.mu.Unlock()
	if shut {
		sc.shutdown()
	}

	err := sc.readFrames(sc)
	sc.mu.Lock()
	graceful := sc.goingAway
	sc.idle.Stop()
	sc.mu.Unlock()
	sc.fail(fmt.Errorf("h2: connection ended: %w", err))
	sc.closeLinger()
	sc.wg.Wait()
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
	if graceful || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown sends GOAWAY on every connection: streams in flight finish,
// then the connections close. It does not wait for any of it: a GOAWAY is
// queued, for the connection's writer or a pooled worker to write (a peer
// that does not read holds that one, for WriteTimeout at most, and not the
// others'), and an idle connection closes from a goroutine of its own.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.shut = true
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.Unlock()
	for _, sc := range conns {
		sc.shutdown()
	}
}

// shutdown stops accepting streams; the connection closes when the last
// one ends.
func (sc *serverConn) shutdown() {
	sc.mu.Lock()
	if sc.goingAway {
		sc.mu.Unlock()
		return
	}
	sc.goingAway = true
	last, idle := sc.lastID, sc.active == 0
	sc.mu.Unlock()
	sc.goAway(last)
	if idle {
		go sc.closeFlushed()
	}
}

// closeFlushed flushes what is queued (the GOAWAY) and closes the
// connection; the flush waits no longer than goAwayTimeout for a peer that
// does not read.
func (sc *serverConn) closeFlushed() {
	sc.lockFinal()
	sc.unlockFinal()
	_ = sc.nc.Close()
}

func (sc *serverConn) idleExpired() {
	sc.mu.Lock()
	idle := sc.active == 0
	sc.mu.Unlock()
	if idle {
		sc.shutdown()
	}
}

// The server's side of the reader loop (see side).

func (sc *serverConn) onGoAway(*http2.GoAwayFrame) {} // a client's GOAWAY: its streams go on
func (sc *serverConn) setting(http2.Setting)       {}

func (sc *serverConn) lastStream() uint32 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.lastID
}

func (sc *serverConn) idleStream(id uint32) bool {
	// The client opens the odd streams, in order; the server none (no push).
	return id%2 == 0 || id > sc.lastID
}

func (sc *serverConn) sawStream(id uint32) {
	sc.mu.Lock()
	if id > sc.lastID && id%2 == 1 {
		sc.lastID = id
	}
	sc.mu.Unlock()
}

func (sc *serverConn) refuse(id uint32, code http2.ErrCode) {
	sc.queue(control{kind: ctlReset, id: id, val: uint32(code)})
}

func (sc *serverConn) onHeaders(f *hblock) error {
	id := f.StreamID
	sc.mu.Lock()
	st := sc.streams[id]
	if st != nil {
		// Trailers.
		if st.recvEnd {
			sc.mu.Unlock()
			if f.PseudoValue("method") != "" {
				// A new request on a stream that had one, as below, but
				// found before the stream is forgotten.
				return sc.reusedStream(id)
			}
			sc.resetStream(st, http2.ErrCodeStreamClosed, errors.New("h2: HEADERS after the request's end")) // RFC 9113 5.1
			return nil
		}
		if !f.StreamEnded() {
			sc.mu.Unlock()
			sc.resetStream(st, http2.ErrCodeProtocol, errors.New("h2: trailers without END_STREAM"))
			return nil
		}
		sc.onTrailers(st, f.Fields)
		return nil
	}
	if id%2 == 0 {
		sc.mu.Unlock()
		return fmt.Errorf("h2: HEADERS on even stream %d from a client: %w", id, http2.ConnectionError(http2.ErrCodeProtocol)) // RFC 9113 5.1.1
	}
	if id <= sc.lastID {
		sc.mu.Unlock()
		switch {
		case f.PseudoValue("method") != "":
			return sc.reusedStream(id)
		case f.StreamEnded():
			// Trailers of a stream this end reset or refused, sent before
			// the client knew: RFC 9113 5.1 says to ignore them (the block
			// was decoded, so HPACK stays in step).
			return nil
		}
		return fmt.Errorf("h2: HEADERS on closed stream %d: %w", id, http2.ConnectionError(http2.ErrCodeStreamClosed))
	}
	sc.lastID = id
	if sc.goingAway {
		sc.mu.Unlock()
		sc.refuse(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if sc.active >= int(sc.srv.maxStreams()) || sc.running >= int(sc.srv.maxStreams()) {
		// The second bound keeps a client that opens and resets streams
		// quickly from piling up handlers.
		sc.mu.Unlock()
		sc.refuse(id, http2.ErrCodeRefusedStream)
		return nil
	}
	sc.mu.Unlock()

	ss := &serverStream{srv: sc, truncated: f.Truncated} // not shared yet: dropped if the request is malformed
	sc.initStream(&ss.stream, id)
	st = &ss.stream
	var r http.Request // on the stack: the request is ss.request, WithContext's copy
	err := sc.request(f, &r, &ss.url, ss.vals[:])
	if err == nil && f.StreamEnded() && r.ContentLength > 0 {
		err = errors.New("h2: a content-length with no body") // malformed
	}
	if err != nil {
		sc.refuse(id, http2.ErrCodeProtocol)
		return nil
	}
	st.recvWin, st.narrow = initialWindow, true
	// The request's context ends when the stream is reset, the connection
	// ends or the handler returns.
	var req *http.Request
	var cancel context.CancelFunc
	if sc.ownCtx {
		// The stream's own, in its allocation: a client of this package
		// resets its stream from it without context.AfterFunc.
		ss.ctx.SetParent(sc.ctx)
		st.sctx = &ss.ctx
		// WithContext's copy is inlined and does not escape: the
		// request is in the stream's allocation.
		ss.request = *r.WithContext(&ss.ctx)
	} else {
		var ctx context.Context
		ctx, cancel = context.WithCancel(sc.ctx)
		ctx = httptrace.WithClientTrace(ctx, netx.InterimTrace(func(code int, h http.Header) error {
			return sc.writeInterim(&ss.stream, code, h)
		}))
		ss.request = *r.WithContext(ctx)
		st.abort = cancel
	}
	req = &ss.request
	if f.StreamEnded() {
		req.Body = http.NoBody
		req.ContentLength = 0
		st.recvEnd, st.rerr = true, io.EOF
	} else {
		st.want = req.ContentLength
		ss.rbody = reqBody{st: st, expect: strings.EqualFold(req.Header.Get("Expect"), "100-continue")}
		req.Body = &ss.rbody
	}
	st.rtrailer = &req.Trailer
	st.req = req
	sc.mu.Lock()
	sc.streams[id] = st
	sc.active++
	sc.running++
	sc.idle.Stop()
	sc.mu.Unlock()
	sc.wg.Add(1)
	pool.run((*handleTask)(ss))
	return nil
}

// handleTask runs a stream's handler on a worker.
type handleTask serverStream

func (t *handleTask) run() {
	ss := (*serverStream)(t)
	ss.srv.handle(&ss.stream, ss.req, ss.abort, ss.truncated)
}

// reusedStream is the connection error of a request on stream id, not
// above the highest the client opened (RFC 9113 5.1.1).
func (sc *serverConn) reusedStream(id uint32) error {
	return fmt.Errorf("h2: request on stream %d, not above %d: %w", id, sc.lastStream(), http2.ConnectionError(http2.ErrCodeProtocol))
}

// request builds the request of a header block into r, its URL u (its
// context is the caller's to set).
func (sc *serverConn) request(f *hblock, r *http.Request, u *url.URL, vals []string) error {
	method, path := f.PseudoValue("method"), f.PseudoValue("path")
	scheme, authority := f.PseudoValue("scheme"), f.PseudoValue("authority")
	if method == "" || method == http.MethodConnect || f.PseudoValue("protocol") != "" || path == "" || scheme == "" {
		return errors.New("h2: unsupported or incomplete request pseudo-headers")
	}
	// Both go verbatim into an HTTP/1.1 request line when the request is
	// sent on as HTTP/1 (a query is not escaped): a space would end the
	// method or the target there and make the rest say something else.
	if !httpguts.ValidHeaderFieldName(method) { // a token, as a method is (RFC 9110 9.1)
		return fmt.Errorf("h2: :method %q is not a token", method)
	}
	if strings.IndexByte(path, ' ') >= 0 {
		return fmt.Errorf("h2: :path %q has a space", path)
	}
	if path[0] != '/' && (path != "*" || method != http.MethodOptions) {
		return fmt.Errorf("h2: :path %q is not origin-form", path) // RFC 9113, 8.3.1
	}
	h, cl, err := headerOf(f.Fields, vals)
	if err != nil {
		return err
	}
	if err := netx.ParseTarget(path, u); err != nil {
		return fmt.Errorf("h2: bad :path: %w", err)
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	delete(h, "Host")
	*r = http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		ContentLength: cl,
		Host:          authority,
		RemoteAddr:    sc.addr,
		RequestURI:    path,
		Trailer:       declaredTrailer(h),
	}
	return nil
}

// streamClosed is the connection's onClosed.
func (sc *serverConn) streamClosed(*stream) {
	if sc.streamEnded(sc.srv.idleTimeout()) {
		go sc.closeFlushed()
	}
}

// handle runs the handler for one stream and writes its response.
func (sc *serverConn) handle(st *stream, req *http.Request, cancel context.CancelFunc, truncated bool) {
	defer sc.wg.Done()
	defer func() {
		sc.mu.Lock()
		sc.running--
		sc.mu.Unlock()
	}()
	if cancel != nil {
		defer cancel()
	} else {
		defer st.sctx.Cancel(nil)
	}
	var resp *http.Response
	var err error
	if truncated {
		resp = &http.Response{StatusCode: http.StatusRequestHeaderFieldsTooLarge, Header: http.Header{}, Body: http.NoBody, ContentLength: 0}
	} else {
		resp, err = sc.srv.Handler.RoundTrip(req)
	}
	if err != nil && errors.Is(err, ErrRefuse) {
		sc.resetStream(st, http2.ErrCodeRefusedStream, ErrRefused)
		return
	}
	if err == nil && resp == nil {
		// A handler's bug, which must not take the process down.
		err = errNoResponse
		sc.srv.noResponse.Do(func() {
			sc.srv.log().Error("h2: a handler returned no response and no error; answered 500 (logged once)",
				"method", req.Method, "authority", req.Host)
		})
	}
	if err != nil {
		resp = errorResponse(err)
	}
	sc.writeResponse(st, req, resp)
	if req.Body != http.NoBody {
		st.closeRead(false)
	}
	// A response written before the request ended: stop the client sending.
	sc.mu.Lock()
	stop := st.sentEnd && !st.recvEnd
	sc.mu.Unlock()
	if stop {
		sc.resetStream(st, http2.ErrCodeNo, errReset)
	}
}

// errNoResponse stands for the error a handler that returned neither a
// response nor an error did not return.
var errNoResponse = errors.New("h2: the handler returned no response")

// errorResponse is the answer to a handler error: 502, 504 for a deadline,
// 500 for no response at all.
func errorResponse(err error) *http.Response {
	code := http.StatusBadGateway
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	case errors.Is(err, errNoResponse):
		code = http.StatusInternalServerError
	}
	msg := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, err.Error())
	return &http.Response{StatusCode: code, Header: http.Header{"Conduit-Proxy-Error": {msg}}, Body: http.NoBody, ContentLength: 0}
}

// statusText holds the status codes as strings, and statusLine a
// response's Status ("200 OK") for the codes with a text.
var statusText, statusLine [600]string

func init() {
	for i := 100; i < len(statusText); i++ {
		statusText[i] = strconv.Itoa(i)
		if t := http.StatusText(i); t != "" {
			statusLine[i] = statusText[i] + " " + t
		}
	}
}

// responseStatus is an http.Response's Status for code.
func responseStatus(code int) string {
	if code >= 100 && code < len(statusLine) && statusLine[code] != "" {
		return statusLine[code]
	}
	return statusString(code) + " " + http.StatusText(code)
}

func statusString(code int) string {
	if code >= 100 && code < len(statusText) {
		return statusText[code]
	}
	return strconv.Itoa(code)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, maxFrame); return &b }}

// writeResponse writes resp on st. Whatever of the body is there already
// goes out with the HEADERS; the HEADERS and then the body are flushed
// whenever the next read may block (a body that cannot tell may always),
// so a head the upstream sent before its body is not held back until the
// body comes, however late.
func (sc *serverConn) writeResponse(st *stream, req *http.Request, resp *http.Response) {
	body := resp.Body
	if body == nil {
		body = http.NoBody
	}
	defer body.Close()
	code := resp.StatusCode
	noBody := body == http.NoBody || req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int
	var rerr error
	have := true
	switch {
	case noBody:
		rerr = io.EOF
	case !netx.MayBlock(body):
		n, rerr = body.Read(buf)
		if rerr == nil && int64(n) == resp.ContentLength && n < len(buf) {
			// Read the end too, so a pooled upstream connection is released.
			var m int
			m, rerr = body.Read(buf[n:])
			n += m
		}
	default:
		have = false
	}
	if rerr != nil && rerr != io.EOF {
		sc.resetStream(st, http2.ErrCodeInternal, rerr)
		return
	}
	w := sender{c: &sc.conn, s: st}
	end := have && n == 0 && rerr == io.EOF && !hasValues(resp.Trailer)
	w.lock()
	st.final = true // no informational response after this (see Interim)
	err := w.headers(end, func(enc func(string, string)) {
		enc(":status", statusString(code))
		encodeHeader(resp.Header, enc)
		if _, ok := resp.Header["Content-Length"]; !ok && resp.ContentLength >= 0 && !noBody {
			enc("content-length", strconv.FormatInt(resp.ContentLength, 10))
		}
	})
	if err == nil && !end {
		_, err = w.copyBody(body, buf, have, n, rerr, func() http.Header { return resp.Trailer }, false)
	}
	w.flush()
	if err != nil {
		sc.resetStream(st, http2.ErrCodeInternal, err)
		return
	}
	sc.endSend(st)
}

// Interim implements netx.Interim for the handlers' requests, whose
// contexts are their streams' own: a handler's informational response goes
// to its client before the final one.
func (sc *serverConn) Interim(a *netx.AbortCtx, code int, h http.Header) error {
	var st *stream
	sc.mu.Lock()
	for _, s := range sc.streams {
		if s.sctx == a {
			st = s
			break
		}
	}
	sc.mu.Unlock()
	if st == nil {
		return errLateInterim // the stream has ended
	}
	return sc.writeInterim(st, code, h)
}

// writeInterim writes an informational response on st as HEADERS without
// END_STREAM; once the final response is under way (final, under wmu), it
// is refused.
func (sc *serverConn) writeInterim(st *stream, code int, h http.Header) error {
	w := sender{c: &sc.conn, s: st}
	w.lock()
	defer w.flush()
	if st.final {
		return errLateInterim
	}
	return w.headers(false, func(enc func(string, string)) {
		enc(":status", statusString(code))
		encodeHeader(h, enc)
	})
}

var errLateInterim = errors.New("h2: informational response after the final one")

// hasValues reports whether a trailer map has a field with a value.
func hasValues(h http.Header) bool {
	for _, vs := range h {
		if len(vs) > 0 {
			return true
		}
	}
	return false
}

// reqBody is a request body.
type reqBody struct {
	st *stream
	// expect: the client waits for 100 Continue before the body, sent at
	// the handler's first read (as net/http does).
	expect bool
}

func (b *reqBody) Read(p []byte) (int, error) {
	if b.expect {
		b.expect = false
		if b.st.wouldBlock() {
			w := sender{c: b.st.c, s: b.st}
			_ = w.headers(false, func(enc func(string, string)) { enc(":status", "100") })
			w.flush()
		}
	}
	return b.st.read(p)
}
func (b *reqBody) Close() error {
	// The window stays narrow: a body closed unread was not taken, and a
	// handler may close it before it refuses the request. What still
	// arrives is discarded and its window returned at the initial
	// window's pace.
	b.st.closeRead(false)
	return nil
}
