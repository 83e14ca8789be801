package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// maxReplayBody is the largest request body kept in memory, so that the
// request can be sent again when a pooled connection turns out closed.
const maxReplayBody = bufSize

// Response is what an Observer sees of a response head.
type Response interface {
	// Code is the status code.
	Code() int
	// Get returns the first value of a header field, or "".
	Get(name string) string
}

// Code implements Response.
func (h *Head) Code() int { return h.Status }

// Observer follows one forwarded request.
type Observer interface {
	// ResponseHead is called when the final response head arrived.
	ResponseHead(resp Response)
	// Done is called once when the exchange ended: status is 0 when no
	// response came, err nil when the exchange completed.
	Done(status int, err error)
}

// Rerouter is an optional capability of an Observer: a request that was
// not sent (an error marked netx.ErrUnsent: its upstream could not be
// reached, or refused it unprocessed) is offered to Reroute, which may
// return another call for it (another endpoint of the same service). When
// it accepts, Reroute has ended the failed attempt as Done would; when it
// declines, the server fails the request and calls Done. The server offers
// a request again as long as Reroute accepts it: Reroute bounds the
// attempts.
type Rerouter interface {
	Reroute(err error) (call Call, ok bool)
}

// Call is the routing decision of one request.
type Call struct {
	// Pool is where the request goes.
	Pool *Pool
	// RoundTrip, when set instead of Pool, sends the request as an
	// http.Request (an HTTP/2 connection to a peer proxy, say).
	RoundTrip func(*http.Request) (*http.Response, error)
	// Obs, when set, follows the exchange.
	Obs Observer
	// Status and Err, when Pool is nil, are the error answered.
	Status int
	Err    error
	// MarkUnsent says the client is a meshed peer's proxy: the error that
	// answers a request not sent upstream (netx.ErrUnsent) carries
	// netx.HeaderUnsent, for that proxy to send the request elsewhere.
	MarkUnsent bool
}

// Router routes the requests of one connection.
type Router interface {
	// Route decides a forwardable request; ok false hands the connection
	// over to the general path, this request included. Route may Drop and
	// Add fields of req, and DropTrailer fields of its chunked body.
	Route(req *Head) (call Call, ok bool)
}

// Server runs the fast path of one listener.
type Server struct {
	// IdleTimeout closes a connection idle between requests (default 10 min).
	IdleTimeout time.Duration
	// HeadTimeout bounds reading a request head (default 30 s).
	HeadTimeout time.Duration
	// DialTimeout bounds connecting upstream (default 2 s).
	DialTimeout time.Duration

	mu       sync.Mutex
	conns    map[*srvConn]struct{}
	draining atomic.Bool
	keepIdle time.Duration // keepIdleDeadline, when set (tests)
}

type srvConn struct {
	c    net.Conn
	mu   sync.Mutex
	idle bool
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Shutdown makes every connection close once its current exchange ends, and
// idle ones at once.
func (s *Server) Shutdown() {
	s.draining.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for sc := range s.conns {
		sc.mu.Lock()
		if sc.idle {
			_ = sc.c.SetReadDeadline(time.Unix(1, 0))
		}
		sc.mu.Unlock()
	}
}

func (s *Server) track(sc *srvConn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[*srvConn]struct{}{}
	}
	if add {
		s.conns[sc] = struct{}{}
	} else {
		delete(s.conns, sc)
	}
}

// replayConn reads pre before the connection.
type replayConn struct {
	net.Conn
	pre []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pre) > 0 {
		n := copy(p, r.pre)
		r.pre = r.pre[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// NetConn returns the wrapped connection.
func (r *replayConn) NetConn() net.Conn { return r.Conn }

// exchange is the per-connection state, reused for every request.
type exchange struct {
	s       *Server
	c       net.Conn
	br      *bufio.Reader // nil between exchanges (see bufs.go)
	bw      *bufio.Writer
	src     replayConn // what br reads: the bytes that ended the idle wait, then c
	idle    []byte     // what the connection waits for a request with
	req     Head
	resp    Head
	closing bool
	unread  bool // an exchange ended with the client's request body unread (see lingerClose)
	hang    hangup
	// ictx is the parent of the requests' contexts (see httpRequest),
	// made with the first: it holds the exchange as their netx.Interim.
	// imu guards icur, the
	// context of the request whose round trip runs (see roundTrip), which
	// Interim writes for.
	ictx context.Context
	imu  sync.Mutex
	icur *netx.AbortCtx
}

// ServeConn serves c until it ends or a request must take the general path;
// then handover receives the connection, which replays the bytes already
// read. ServeConn closes c unless it hands it over.
func (s *Server) ServeConn(c net.Conn, rt Router, handover func(net.Conn)) {
	sc := &srvConn{c: c}
	s.track(sc, true)
	defer s.track(sc, false)
	x := &exchange{s: s, c: c, src: replayConn{Conn: c}}
	idleTimeout, headTimeout := orDefault(s.IdleTimeout, 10*time.Minute), orDefault(s.HeadTimeout, 30*time.Second)
	for {
		if s.draining.Load() {
			break
		}
		sc.mu.Lock()
		sc.idle = true
		idleUntil := time.Now().Add(idleTimeout)
		_ = c.SetReadDeadline(idleUntil)
		sc.mu.Unlock()
		if !x.await() {
			break
		}
		// A head that is buffered whole is read without waiting: it needs
		// no deadline of its own (each is a runtime timer to move).
		headDeadline := !x.headBuffered()
		sc.mu.Lock()
		sc.idle = false
		if headDeadline {
			_ = c.SetReadDeadline(time.Now().Add(headTimeout))
		}
		sc.mu.Unlock()
		err := x.req.ReadRequest(x.br)
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrHeadTooLarge) {
			break // I/O error or timeout: nothing to answer
		}
		var call Call
		ok := err == nil && x.req.Forwardable()
		if ok {
			call, ok = rt.Route(&x.req)
		}
		if !ok {
			_ = c.SetReadDeadline(time.Time{})
			pre := append([]byte(nil), x.req.Raw...)
			if n := x.br.Buffered(); n > 0 {
				b, _ := x.br.Peek(n)
				pre = append(pre, b...)
			}
			pre = append(pre, x.src.pre...)
			handover(&replayConn{Conn: c, pre: pre})
			return
		}
		// The exchange reads the client without a deadline. The idle one,
		// when it is still there and far off, is left for the hang-up
		// watch to clear (watchDelay into the exchange): a quicker
		// exchange, nearly all, ends before it matters, and the next idle
		// wait sets its own.
		clearLater := !headDeadline && time.Until(idleUntil) > s.keepIdleDeadline()
		if !clearLater {
			_ = c.SetReadDeadline(time.Time{})
		}
		x.startWatch(clearLater)
		keep := x.forward(&call)
		x.stopWatch()
		if !keep || x.hang.gone.Load() {
			break
		}
		if putBuffers(x.br, x.bw) {
			x.br, x.bw = nil, nil
		}
	}
	if x.unread {
		lingerClose(c)
		return
	}
	_ = c.Close()
}

// lingerTime and lingerBytes bound what lingerClose reads.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// lingerClose closes a client connection whose last request body was not
// read to its end (the answer came first). Closed at once, with the
// client's bytes unread, it would be reset, and a client that had not
// read its answer yet could lose it: it is half-closed first (the client
// reads the answer, then its end), and what the client still sends is
// read and dropped for lingerTime or lingerBytes, as net/http's server
// does.
func lingerClose(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if ok && cw.CloseWrite() == nil {
		_ = c.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, c, lingerBytes)
	}
	_ = c.Close()
}

// keepIdleDeadline is how far off the idle deadline must be for an
// exchange to start with it (see ServeConn): far more than watchDelay.
const keepIdleDeadline = 5 * time.Second

func (s *Server) keepIdleDeadline() time.Duration {
	if s.keepIdle > 0 {
		return s.keepIdle
	}
	return keepIdleDeadline
}

var headEnd = []byte("\r\n\r\n")

// headBuffered reports whether the next request head is buffered whole (in
// br, or in the bytes that ended the idle wait), so that reading it waits
// for nothing. A head that ends otherwise (a bare LF) or that straddles
// both only costs its deadline.
func (x *exchange) headBuffered() bool {
	if n := x.br.Buffered(); n > 0 {
		b, _ := x.br.Peek(n)
		return bytes.Contains(b, headEnd)
	}
	return bytes.Contains(x.src.pre, headEnd)
}

// await waits for the next request. Between exchanges the connection holds
// only its small idle buffer: the first bytes land there, and the large
// buffers are taken once they came. It reports false when the connection
// ended (EOF, error, or the idle deadline).
func (x *exchange) await() bool {
	if x.br != nil { // bytes of the next request are already buffered
		_, err := x.br.Peek(1)
		return err == nil
	}
	if len(x.src.pre) > 0 { // read by the hang-up watch (stopWatch)
		x.br, x.bw = getReader(&x.src), getWriter(x.c)
		return true
	}
	if x.idle == nil {
		x.idle = make([]byte, idleReadSize)
	}
	var n int
	for range 100 { // a reader that keeps returning nothing is broken (as bufio says)
		var err error
		if n, err = x.c.Read(x.idle); n > 0 || err != nil {
			break
		}
	}
	if n == 0 {
		return false
	}
	x.src.pre = x.idle[:n]
	x.br, x.bw = getReader(&x.src), getWriter(x.c)
	return true
}

// forward runs one exchange; it reports whether the client connection can
// serve another request.
func (x *exchange) forward(call *Call) (keep bool) {
	req := &x.req
	x.resp.reset()
	x.closing = req.Close || x.s.draining.Load()
	if x.hang.gone.Load() { // not sent elsewhere after the client went
		return x.fail(call, http.StatusBadGateway, errClientGone, false)
	}
	x.watchReset() // a rerouted request is read again (see hangup)
	if call.RoundTrip != nil {
		return x.forwardRT(call)
	}
	if call.Pool == nil {
		return x.fail(call, call.Status, call.Err, x.skipBody())
	}
	// A body that fits the buffer is read before the request is sent, and
	// kept, so that the request can be sent again. Longer ones, and chunked
	// ones, go as an http.Request: Pool.RoundTrip sends them while it reads
	// the response, which the upstream may send before it has read the
	// body (a 413, a 401, an echo that streams). Sent here, the whole body
	// would go before a byte of the answer was read, and that answer would
	// wait for the client to send all of it, or fail as the upstream
	// closed.
	var body []byte
	switch req.requestBody() {
	case bodyFixed:
		if req.ContentLength > maxReplayBody {
			return x.forwardPool(call)
		}
		var err error
		if body, err = x.br.Peek(int(req.ContentLength)); err != nil {
			return x.fail(call, 0, fmt.Errorf("h1: read request body: %w", err), false)
		}
	case bodyChunked:
		return x.forwardPool(call)
	}
	x.watchReady(x.br.Buffered() - len(body))
	maxIdle := call.Pool.idleTimeout()
	var u *upConn
	var err error
	for attempt := 0; ; attempt++ {
		u = nil
		if attempt == 0 {
			u = call.Pool.take(maxIdle)
		}
		if u == nil {
			ctx, cancel := context.WithTimeout(context.Background(), orDefault(x.s.DialTimeout, 2*time.Second))
			u, err = call.Pool.dial(ctx)
			cancel()
			if err != nil {
				// The body is still unread on the client connection: the
				// request can go anywhere else.
				if next, ok := reroute(call, err); ok {
					return x.forward(&next)
				}
				return x.fail(call, http.StatusBadGateway, err, x.discard(len(body)))
			}
		}
		x.watchAbort(nil, u)
		interim := false
		if err = x.sendRequest(u, body); err == nil {
			interim, err = x.readResponseHead(u)
		}
		if err == nil {
			break
		}
		x.watchAbort(nil, nil)
		_ = u.c.Close()
		// A pooled connection closed by the upstream: nothing was answered
		// (an interim response says the upstream has the request).
		if u.reused && attempt == 0 && !interim && len(x.resp.Raw) == 0 && !x.hang.gone.Load() {
			continue
		}
		if x.hang.gone.Load() {
			err = errClientGone
		}
		return x.fail(call, http.StatusBadGateway, err, x.discard(len(body)))
	}
	if x.resp.Unsent && call.Pool.Refused != nil {
		// The peer's proxy did not send it on: it can go elsewhere, its
		// body still buffered on the client connection.
		err = netx.Unsent(call.Pool.Refused(x.resp.Get("Conduit-Proxy-Error")))
		x.watchAbort(nil, nil) // u is the pool's again: a hang-up must not touch it
		if r := &x.resp; r.responseBody(req.IsHEAD()) == bodyNone && r.persistent() && !x.hang.gone.Load() {
			call.Pool.put(u)
		} else {
			_ = u.c.Close()
		}
		if next, ok := reroute(call, err); ok {
			return x.forward(&next)
		}
		return x.fail(call, http.StatusBadGateway, err, x.discard(len(body)))
	}
	if body != nil {
		x.discard(len(body))
	}
	resp := &x.resp
	if call.Obs != nil {
		call.Obs.ResponseHead(resp)
	}
	mode := resp.responseBody(req.IsHEAD())
	if mode == bodyUntilClose || x.s.draining.Load() {
		x.closing = true
	}
	resp.writeResponse(x.bw, x.closing)
	switch mode {
	case bodyFixed:
		_, err = copyFixed(x.bw, u.br, resp.ContentLength)
	case bodyChunked:
		_, err = copyChunked(x.bw, u.br, nil)
	case bodyUntilClose:
		_, err = copyUntilEOF(x.bw, u.br)
	}
	if err == nil {
		if ferr := x.bw.Flush(); ferr != nil {
			err = &writeError{ferr}
		}
	}
	x.watchAbort(nil, nil)
	if err == nil && mode != bodyUntilClose && resp.persistent() && !x.hang.gone.Load() {
		call.Pool.put(u)
	} else {
		_ = u.c.Close()
	}
	if call.Obs != nil {
		call.Obs.Done(resp.Status, err)
	}
	return err == nil && !x.closing
}

// sendRequest writes the request head and its body, read whole (see
// forward), upstream.
func (x *exchange) sendRequest(u *upConn, body []byte) error {
	x.req.writeRequest(u.bw)
	_, _ = u.bw.Write(body)
	if err := u.bw.Flush(); err != nil {
		return fmt.Errorf("h1: send request: %w", err)
	}
	return nil
}

// forwardPool forwards a request whose body is sent while the response is
// read (see forward), through Pool.RoundTrip.
func (x *exchange) forwardPool(call *Call) bool {
	rt := *call
	rt.RoundTrip = call.Pool.RoundTrip
	return x.forwardRT(&rt)
}

// readResponseHead reads the final response head, passing 1xx ones on (at
// most netx.MaxInterims); it reports whether one came.
func (x *exchange) readResponseHead(u *upConn) (interim bool, err error) {
	for n := 0; ; n++ {
		interim = n > 0
		if err := x.resp.ReadResponse(u.br); err != nil {
			return interim, fmt.Errorf("h1: read response: %w", err)
		}
		switch {
		case x.resp.Status == http.StatusSwitchingProtocols:
			return interim, errors.New("h1: upstream switched protocols without an upgrade request")
		case x.resp.Status < 200 && n == netx.MaxInterims:
			return true, fmt.Errorf("h1: more than %d informational responses", netx.MaxInterims)
		case x.resp.Status < 200:
			x.resp.writeResponse(x.bw, false)
			if err := x.bw.Flush(); err != nil {
				return interim, fmt.Errorf("h1: write informational response: %w", err)
			}
			continue
		}
		return interim, nil
	}
}

// skipBody consumes the request body so that the connection can go on; it
// reports whether that succeeded.
func (x *exchange) skipBody() bool {
	switch x.req.requestBody() {
	case bodyFixed:
		if x.req.ContentLength > maxReplayBody {
			return false
		}
		_, err := x.br.Discard(int(x.req.ContentLength))
		return err == nil
	case bodyChunked:
		return false
	}
	return true
}

func (x *exchange) discard(n int) bool {
	_, err := x.br.Discard(n)
	return err == nil
}

// reroute offers call's request, which failed with err, to its Rerouter
// when err says the request was not sent.
func reroute(call *Call, err error) (Call, bool) {
	rr, ok := call.Obs.(Rerouter)
	if !ok || !errors.Is(err, netx.ErrUnsent) {
		return Call{}, false
	}
	return rr.Reroute(err)
}

// fail answers the request, whose final response was not started, with an
// error status, and reports whether the connection can go on.
func (x *exchange) fail(call *Call, status int, err error, bodyDone bool) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	if status == 0 {
		status = http.StatusBadGateway
	}
	closing := x.closing || !bodyDone
	x.unread = x.unread || !bodyDone
	w := x.bw
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(status))
	w.WriteByte(' ')
	w.WriteString(http.StatusText(status))
	w.WriteString("\r\nConduit-Proxy-Error: ")
	w.WriteString(fieldValue(err))
	if call.MarkUnsent && errors.Is(err, netx.ErrUnsent) {
		w.WriteString("\r\n" + netx.HeaderUnsent + ": 1")
	}
	w.WriteString("\r\nContent-Length: 0\r\n")
	if closing {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	if w.Flush() != nil {
		closing = true
	}
	if call.Obs != nil {
		call.Obs.Done(0, err)
	}
	return !closing
}

// fieldValue makes an error message safe as a header field value.
func fieldValue(err error) string {
	if err == nil {
		return ""
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, err.Error())
}

var _ io.Reader = (*replayConn)(nil)
