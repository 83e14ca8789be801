package h2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// smallBody is the largest request body read before the HEADERS are
// written, so that both leave in one write.
const smallBody = maxFrame

// Client sends requests on HTTP/2 connections to one upstream, multiplexed.
type Client struct {
	// Dial opens a connection that has negotiated HTTP/2 (ALPN h2, or h2c).
	Dial func(ctx context.Context) (net.Conn, error)
	// DialTimeout bounds Dial (default 10 s).
	DialTimeout time.Duration
	// IdleTimeout closes a connection without streams for longer (default 10 min).
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to a connection (default
	// DefaultWriteTimeout); see DefaultWriteTimeout.
	WriteTimeout time.Duration
	// PingTimeout: a connection with streams in flight that has read
	// nothing for this long is sent a PING, and closed if nothing more
	// arrives within as long again (default 15 s).
	PingTimeout time.Duration
	// MinPingInterval: a PING follows the previous one only once the
	// server has sent HEADERS or DATA since, or this long has passed
	// (default DefaultMinPingInterval; see checkHealth). A server with
	// no such policy, another Conduit proxy, may be given less.
	MinPingInterval time.Duration
	// Refused, when set, is shown every response: an error from it says
	// the server refused the request unprocessed in an answer of its own
	// (a peer proxy's netx.HeaderUnsent). RoundTrip then closes the
	// response and returns that error: marked netx.ErrUnsent, the body
	// restored, when r's body allows, as after a REFUSED_STREAM (but
	// without trying again); as it is otherwise.
	Refused func(*http.Response) error

	mu      sync.Mutex
	conns   []*clientConn
	dialing *dialCall
}

// DefaultMinPingInterval is how long a PING waits after the previous one
// when the server has sent neither HEADERS nor DATA in between: gRPC servers
// count an earlier one as a strike (grpc-go's and gRPC core's default
// "minimum time between pings" is 5 minutes, and a third strike closes
// the connection with GOAWAY ENHANCE_YOUR_CALM "too_many_pings").
const DefaultMinPingInterval = 5 * time.Minute

type dialCall struct {
	done chan struct{}
	err  error
}

type clientConn struct {
	conn
	cl *Client

	nextID uint32 // under wmu, and changed under mu too

	// Under mu.
	maxStreams int
	health     *time.Timer
	pinging    bool      // a PING sent at pingAt is unanswered
	pingAt     time.Time // when the last PING was sent

	seen       uint64    // conn.frames + conn.pingAcks at the last health check
	quietSince time.Time // when either last moved
	// goAway is the server's last GOAWAY, for the error of the streams
	// the connection's end fails (the reader's: no lock).
	goAway *goAwayError

	// interims holds the informational responses of the streams that
	// received some, until roundTrip passes them on (under mu). It is
	// here, made on the first, rather than in every stream: a client
	// stream's allocation stays in its size class.
	interims map[uint32]*interimQueue
}

// interimQueue is a stream's informational (1xx) response heads not
// passed on yet, and how many came (see netx.MaxInterims).
type interimQueue struct {
	n int
	q []interimHead
}

type interimHead struct {
	code int
	h    http.Header
}

// takeInterims returns st's informational responses not passed on yet;
// with last (roundTrip returns) it forgets st. cc.mu is held.
func (cc *clientConn) takeInterims(st *stream, last bool) []interimHead {
	if len(cc.interims) == 0 {
		return nil
	}
	iq := cc.interims[st.id]
	if iq == nil {
		return nil
	}
	q := iq.q
	iq.q = nil
	if last {
		delete(cc.interims, st.id)
	}
	return q
}

// forgetInterims drops st's informational responses when roundTrip gives
// up on it: after resetStream, as onInterim queues none for a reset
// stream.
func (cc *clientConn) forgetInterims(st *stream) {
	cc.mu.Lock()
	cc.takeInterims(st, true)
	cc.mu.Unlock()
}

// goAwayError is a GOAWAY the server sent before the connection ended.
type goAwayError struct {
	last  uint32
	code  http2.ErrCode
	debug string
}

func (e *goAwayError) Error() string {
	return fmt.Sprintf("GOAWAY %v (last stream %d) %q", e.code, e.last, e.debug)
}

func (c *Client) idleTimeout() time.Duration {
	if c.IdleTimeout > 0 {
		return c.IdleTimeout
	}
	return 10 * time.Minute
}

func (c *Client) writeTimeout() time.Duration {
	if c.WriteTimeout > 0 {
		return c.WriteTimeout
	}
	return DefaultWriteTimeout
}

func (c *Client) pingTimeout() time.Duration {
	if c.PingTimeout > 0 {
		return c.PingTimeout
	}
	return 15 * time.Second
}

func (c *Client) minPingInterval() time.Duration {
	if c.MinPingInterval > 0 {
		return c.MinPingInterval
	}
	return DefaultMinPingInterval
}

// RoundTrip sends r and returns its response once the response head
// arrives; the body streams. Cancelling r's context resets the stream.
// A request the server refused unprocessed (REFUSED_STREAM, or above a
// GOAWAY's last stream) is sent again when its body allows: once after a
// REFUSED_STREAM, up to three times past a GOAWAY. A streaming body
// allows it when no more than replayLimit of it had been read (see
// replayBody). An error marked netx.ErrUnsent says r was not sent and can
// be sent elsewhere as it is: its body is unread, or restored.
func (c *Client) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	hasBody := r.Body != nil && r.Body != http.NoBody
	if !hasBody && r.Body != nil {
		_ = r.Body.Close()
	}
	// A small body is read whole once a connection is at hand (so that a
	// failed connection leaves it unread), and sent in one DATA frame.
	isSmall := hasBody && r.ContentLength > 0 && r.ContentLength <= smallBody && len(r.Trailer) == 0
	var small []byte
	var bp *[]byte
	defer func() {
		if bp != nil {
			bufPool.Put(bp)
		}
	}()
	// A streaming body is kept as it is read, until the response head.
	var rb *replayBody
	if hasBody && !isSmall {
		rb = newReplayBody(r.Body)
		r.Body = &rb.first
		defer rb.commit()
	}
	// rewind readies r to be sent again after a refusal; false when its
	// body cannot be.
	rewind := func() bool {
		if rb == nil {
			return true
		}
		body, ok := rb.rewind()
		if ok {
			r.Body = body
		}
		return ok
	}
	for attempt := 0; ; attempt++ {
		cc, err := c.get(ctx)
		if err != nil {
			restoreBody(r, small)
			return nil, netx.Unsent(err) // no connection: nothing was sent
		}
		if isSmall && small == nil {
			bp = bufPool.Get().(*[]byte)
			small = (*bp)[:r.ContentLength]
			_, err := io.ReadFull(r.Body, small)
			_ = r.Body.Close()
			if err != nil {
				cc.release()
				return nil, fmt.Errorf("h2: read request body: %w", err)
			}
		}
		resp, err := cc.roundTrip(r, hasBody, small, rb)
		if err == nil && c.Refused != nil {
			if rerr := c.Refused(resp); rerr != nil {
				_ = resp.Body.Close()
				if !rewind() {
					return nil, rerr
				}
				restoreBody(r, small)
				return nil, netx.Unsent(rerr)
			}
		}
		if err != nil && errors.Is(err, ErrRefused) && rewind() {
			// Past a GOAWAY another connection may take it (three tries);
			// a stream the server reset as refused is tried once more (a
			// meshed peer whose application is gone refuses them all).
			tries := 3
			if errors.Is(err, errRefusedReset) {
				tries = 1
			}
			if attempt < tries && ctx.Err() == nil {
				continue
			}
			restoreBody(r, small)
			err = netx.Unsent(err)
		}
		return resp, err
	}
}

// restoreBody gives r back the small body read from it, for r to be sent
// elsewhere: a copy, as small returns to its pool.
func restoreBody(r *http.Request, small []byte) {
	if small != nil {
		r.Body = io.NopCloser(bytes.NewReader(bytes.Clone(small)))
	}
}

// get returns a connection with a stream slot taken, dialing one when
// none has room.
func (c *Client) get(ctx context.Context) (*clientConn, error) {
	for {
		c.mu.Lock()
		for _, cc := range c.conns {
			if cc.take() {
				c.mu.Unlock()
				return cc, nil
			}
		}
		d := c.dialing
		if d == nil {
			d = &dialCall{done: make(chan struct{})}
			c.dialing = d
			c.mu.Unlock()
			cc, err := c.dial(ctx)
			c.mu.Lock()
			c.dialing = nil
			d.err = err
			if err == nil {
				c.conns = append(c.conns, cc)
			}
			close(d.done)
			c.mu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		c.mu.Unlock()
		select {
		case <-d.done:
			if d.err != nil {
				return nil, d.err
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("h2: %w", netx.Cause(ctx))
		}
	}
}

func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	timeout := c.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	nc, err := c.Dial(dctx)
	if err != nil {
		return nil, fmt.Errorf("h2: connect: %w", err)
	}
	cc := &clientConn{cl: c, nextID: 1, maxStreams: 100}
	cc.init(nc, bufio.NewReaderSize(nc, bufSize), c.writeTimeout())
	cc.onClosed = cc.streamClosed
	cc.quietSince = time.Now()
	cc.lock()
	_, cc.werr = cc.bw.WriteString(http2.ClientPreface)
	if cc.werr == nil {
		cc.werr = cc.wfr.WriteSettings(
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList})
	}
	if cc.werr == nil {
		cc.werr = cc.wfr.WriteWindowUpdate(0, connWindow-initialWindow)
	}
	werr := cc.werr
	cc.unlock()
	if werr != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("h2: connect: %w", werr)
	}
	cc.mu.Lock()
	cc.quietSince = time.Now()
	cc.idle = time.AfterFunc(c.idleTimeout(), cc.idleExpired)
	cc.health = time.AfterFunc(c.pingTimeout()/2, cc.checkHealth)
	cc.mu.Unlock()
	go cc.readLoop()
	return cc, nil
}

// take reserves a stream slot if the connection has one.
func (cc *clientConn) take() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil || cc.goingAway || cc.active >= cc.maxStreams {
		return false
	}
	cc.active++
	cc.idle.Stop()
	return true
}

// streamClosed is the connection's onClosed: the request context's
// AfterFunc stops (or the stream leaves its AbortCtx), and the slot is
// given back.
func (cc *clientConn) streamClosed(st *stream) {
	cc.mu.Lock()
	s, a := st.stop, st.actx
	st.stop, st.actx = nil, nil
	cc.mu.Unlock()
	if s != nil {
		s()
	}
	if a != nil {
		a.StopAbort(st)
	}
	cc.release()
}

// release gives back a stream slot.
func (cc *clientConn) release() {
	if cc.streamEnded(cc.cl.idleTimeout()) {
		cc.close()
	}
}

func (cc *clientConn) idleExpired() {
	cc.mu.Lock()
	idle := cc.active == 0
	if idle {
		cc.goingAway = true
	}
	cc.mu.Unlock()
	if idle {
		cc.close()
	}
}

// checkHealth pings a connection with streams in flight that has been
// quiet for PingTimeout, and closes it when the PING is not answered
// within PingTimeout: a peer gone without a FIN must not hold requests
// until TCP gives up.
//
// It pings no more than a gRPC server allows (see DefaultMinPingInterval):
// a long stream on which nothing moves, a watch or a subscription, is
// pinged once, and then every MinPingInterval, not every PingTimeout,
// which would have the server close it within a minute.
func (cc *clientConn) checkHealth() {
	timeout := cc.cl.pingTimeout()
	now := time.Now()
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	// Frame counters rather than a clock read per frame on the hot path.
	payload := cc.frames.Load()
	if n := payload + cc.pingAcks.Load(); n != cc.seen {
		cc.seen, cc.quietSince = n, now
		cc.pinging = false
	}
	var ping bool
	var dead error
	switch {
	case cc.active == 0 || now.Sub(cc.quietSince) < timeout:
		cc.pinging = false
	case cc.pinging:
		if now.Sub(cc.pingAt) >= timeout {
			dead = fmt.Errorf("h2: PING unanswered for %v, sent after %v with nothing from the server",
				now.Sub(cc.pingAt).Round(time.Millisecond), cc.pingAt.Sub(cc.quietSince).Round(time.Millisecond))
		}
	// HEADERS or DATA read after the last ACK were written after the
	// server had counted that PING: a gRPC server then counts the next
	// one as no strike.
	case payload != cc.ackFrames.Load() || now.Sub(cc.pingAt) >= cc.cl.minPingInterval():
		cc.pinging, ping = true, true
		cc.pingAt = now
	}
	cc.health.Reset(timeout / 2)
	cc.mu.Unlock()
	if ping {
		cc.lock()
		if cc.werr == nil {
			cc.werr = cc.wfr.WritePing(false, [8]byte{'c', 'o', 'n', 'd', 'u', 'i', 't'})
		}
		cc.unlock()
	}
	if dead != nil {
		cc.fail(dead)
		cc.cl.forget(cc)
	}
}

// close ends the connection and forgets it.
func (cc *clientConn) close() {
	cc.fail(errClosed)
	cc.cl.forget(cc)
}

func (c *Client) forget(cc *clientConn) {
	c.mu.Lock()
	c.conns = slices.DeleteFunc(c.conns, func(x *clientConn) bool { return x == cc })
	c.mu.Unlock()
}

// CloseIdle closes connections without streams in flight.
func (c *Client) CloseIdle() {
	c.mu.Lock()
	conns := slices.Clone(c.conns)
	c.mu.Unlock()
	for _, cc := range conns {
		cc.idleExpired()
	}
}

// encodeRequestHeader writes r's header fields with the names of the
// trailer fields r announces. When r.Trailer has keys, they are the names
// (its values are the trailers sent, see copyBody) and a Trailer header is
// left out: this package's server hands a request on with the names in
// both, and sending both announced every name twice. Without r.Trailer, a
// Trailer header goes as it is. A request without trailers costs no
// allocation.
func encodeRequestHeader(r *http.Request, enc func(name, value string)) {
	if len(r.Trailer) == 0 {
		encodeHeader(r.Header, enc)
		return
	}
	encodeHeader(r.Header, func(name, value string) {
		if name != "trailer" {
			enc(name, value)
		}
	})
	for k := range r.Trailer {
		enc("trailer", lowerCommon(k))
	}
}

// roundTrip sends r on a taken slot; rb, when not nil, is r's body kept
// for a refusal.
func (cc *clientConn) roundTrip(r *http.Request, hasBody bool, small []byte, rb *replayBody) (*http.Response, error) {
	ctx := r.Context()
	streaming := hasBody && small == nil
	cs := &clientStream{}
	cc.initStream(&cs.stream, 0) // its ID and send window are set under the locks below
	st := &cs.stream
	st.head, st.vals = &cs.head, cs.vals[:]
	st.req = r
	st.kept = rb

	cc.lock() // stream IDs must go out in order: taken under wmu
	cc.mu.Lock()
	if cc.err != nil || cc.goingAway || cc.nextID > 1<<31-1 {
		cc.goingAway = true
		cc.mu.Unlock()
		cc.unlock()
		cc.release()
		return nil, ErrRefused
	}
	st.id = cc.nextID
	cc.nextID += 2
	cc.streams[st.id] = st
	cc.mu.Unlock()
	w := sender{c: &cc.conn, s: st, locked: true}
	endHeaders := !hasBody
	err := w.c.writeHeaders(st.id, endHeaders, func(enc func(string, string)) {
		host := r.Host
		if host == "" {
			host = r.URL.Host
		}
		scheme := r.URL.Scheme
		if scheme == "" {
			scheme = "https"
		}
		enc(":method", r.Method)
		enc(":scheme", scheme)
		enc(":authority", host)
		enc(":path", r.URL.RequestURI())
		encodeRequestHeader(r, enc)
		if hasBody && r.ContentLength > 0 {
			if _, ok := r.Header["Content-Length"]; !ok {
				enc("content-length", strconv.FormatInt(r.ContentLength, 10))
			}
		}
	})
	done := endHeaders
	switch {
	case err != nil || endHeaders:
	case small != nil:
		err = w.data(small, true)
		done = true
	default:
		// What of a stream's body is there already goes with the HEADERS;
		// the rest is sent from a goroutine of its own.
		bp := bufPool.Get().(*[]byte)
		done, err = w.copyBody(r.Body, *bp, false, 0, nil, func() http.Header { return r.Trailer }, true)
		bufPool.Put(bp)
		if done {
			_ = r.Body.Close()
		}
	}
	w.flush()
	if err != nil {
		if streaming {
			_ = r.Body.Close()
		}
		cc.mu.Lock()
		why := st.rerr
		// The server answered, then reset the stream (NO_ERROR: "stop
		// sending") or ended the connection, before it took the whole body:
		// an early answer, which the client must not discard (RFC 9113 8.1).
		answered := st.resp != nil && st.sentEnd
		cc.mu.Unlock()
		switch {
		case answered: // nothing more goes out on the stream
		case why != nil && errors.Is(why, ErrRefused):
			// Refused while the body was going out (waiting for window):
			// a refusal all the same, for RoundTrip to send it again.
			return nil, why
		default:
			cc.resetStream(st, http2.ErrCodeCancel, err)
			return nil, fmt.Errorf("h2: write request: %w", err)
		}
	} else if done {
		cc.endSend(st)
	} else {
		body := r.Body // a later attempt may give r another (replayBody)
		pool.run(funcTask(func() { cc.sendBody(st, body, r) }))
	}
	// Cancelling ctx resets the stream. An AbortCtx (the HTTP/1.1 fast
	// path's) calls the stream itself; any other context takes an
	// AfterFunc, and the wait below watches its Done.
	var ctxDone <-chan struct{}
	if a, ok := ctx.(*netx.AbortCtx); ok && a.OnAbort(st) {
		cc.mu.Lock()
		closed := st.sentEnd && st.recvEnd
		if !closed {
			st.actx = a
		}
		cc.mu.Unlock()
		if closed {
			a.StopAbort(st)
		}
	} else if ctxDone = ctx.Done(); ctxDone != nil {
		s := context.AfterFunc(ctx, func() { cc.resetStream(st, http2.ErrCodeCancel, netx.Cause(ctx)) })
		cc.mu.Lock()
		closed := st.sentEnd && st.recvEnd
		if !closed {
			st.stop = s
		}
		cc.mu.Unlock()
		if closed {
			s()
		}
	}
	for {
		select {
		case <-st.readable:
			// The head, or an error before it. A body's DATA may have
			// sent the same signal: the body's reader looks at the
			// stream before it waits, so nothing is lost.
			cc.mu.Lock()
			resp, err := st.resp, st.rerr
			st.resp = nil
			interims := cc.takeInterims(st, resp != nil || err != nil)
			cc.mu.Unlock()
			for _, im := range interims {
				if perr := netx.PassInterim(ctx, im.code, im.h); perr != nil {
					if resp != nil {
						_ = resp.Body.Close()
					}
					cc.resetStream(st, http2.ErrCodeCancel, perr)
					cc.forgetInterims(st)
					return nil, fmt.Errorf("h2: pass on informational response %d: %w", im.code, perr)
				}
			}
			if resp != nil {
				return resp, nil
			}
			if err != nil {
				return nil, prefixed(err)
			}
		case <-ctxDone:
			cc.resetStream(st, http2.ErrCodeCancel, netx.Cause(ctx))
			cc.forgetInterims(st)
			return nil, fmt.Errorf("h2: %w", netx.Cause(ctx))
		}
	}
}

// Abort implements netx.Aborter: the request's AbortCtx was canceled.
func (st *stream) Abort(cause error) { st.c.resetStream(st, http2.ErrCodeCancel, cause) }

// prefixed returns err with the package's prefix, once.
func prefixed(err error) error {
	if strings.HasPrefix(err.Error(), "h2: ") {
		return err
	}
	return fmt.Errorf("h2: %w", err)
}

// sendBody streams the rest of r's body, then its trailers or
// END_STREAM.
func (cc *clientConn) sendBody(st *stream, body io.ReadCloser, r *http.Request) {
	defer body.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	w := sender{c: &cc.conn, s: st}
	if _, err := w.copyBody(body, *bp, false, 0, nil, func() http.Header { return r.Trailer }, false); err != nil {
		cc.resetStream(st, http2.ErrCodeCancel, fmt.Errorf("h2: request body: %w", err))
		return
	}
	cc.endSend(st)
}

// readLoop reads the connection's frames until it fails.
func (cc *clientConn) readLoop() {
	err := cc.readFrames(cc)
	if cc.goAway != nil {
		// The server said why, or which streams it would finish: the
		// streams still open learn it with the connection's end.
		err = fmt.Errorf("h2: connection ended after the server's %w: %w", cc.goAway, err)
	}
	cc.fail(prefixed(err))
	cc.cl.forget(cc)
	cc.mu.Lock()
	cc.idle.Stop()
	cc.health.Stop()
	cc.mu.Unlock()
	cc.closeLinger()
}

// The client's side of the reader loop (see side).

func (cc *clientConn) lastStream() uint32 { return 0 }
func (cc *clientConn) sawStream(uint32)   {}

func (cc *clientConn) idleStream(id uint32) bool {
	// The client opens the odd streams, in order; the server none (no push).
	return id%2 == 0 || id >= cc.nextID
}

func (cc *clientConn) setting(s http2.Setting) {
	if s.ID == http2.SettingMaxConcurrentStreams {
		cc.maxStreams = int(min(s.Val, 1<<20))
	}
}

// onHeaders takes a response head or its trailers; what is wrong with
// them resets the stream, never the connection.
func (cc *clientConn) onHeaders(f *hblock) error {
	cc.mu.Lock()
	st := cc.streams[f.StreamID]
	if st == nil && cc.idleStream(f.StreamID) {
		// Not a late response to a stream we reset: a server opens no
		// stream with HEADERS (RFC 9113 5.1, 5.1.1; and no push).
		cc.mu.Unlock()
		return idleError("HEADERS", f.StreamID)
	}
	if st == nil || st.recvEnd {
		cc.mu.Unlock()
		if st != nil {
			cc.resetStream(st, http2.ErrCodeStreamClosed, errReset)
		}
		return nil
	}
	if st.gotHead {
		// Trailers.
		if !f.StreamEnded() {
			cc.mu.Unlock()
			cc.resetStream(st, http2.ErrCodeProtocol, errors.New("h2: trailers without END_STREAM"))
			return nil
		}
		cc.onTrailers(st, f.Fields)
		return nil
	}
	cc.mu.Unlock()
	code, err := strconv.Atoi(f.PseudoValue("status"))
	if err != nil || code < 100 || code > 999 || code == http.StatusSwitchingProtocols {
		cc.resetStream(st, http2.ErrCodeProtocol, fmt.Errorf("h2: bad :status %q", f.PseudoValue("status")))
		return nil
	}
	if code < 200 {
		if f.StreamEnded() {
			cc.resetStream(st, http2.ErrCodeProtocol, errors.New("h2: informational response ends the stream"))
			return nil
		}
		cc.onInterim(st, code, f.Fields)
		return nil
	}
	h, cl, err := headerOf(f.Fields, st.vals)
	if err != nil {
		cc.resetStream(st, http2.ErrCodeProtocol, err)
		return nil
	}
	if f.Truncated {
		cc.resetStream(st, http2.ErrCodeProtocol, errors.New("h2: response header list too large"))
		return nil
	}
	resp := st.head
	*resp = http.Response{
		Status:        responseStatus(code),
		StatusCode:    code,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		ContentLength: cl,
		Request:       st.req,
		Trailer:       declaredTrailer(h),
	}
	// A HEAD response, 204 and 304 have no body whatever their
	// content-length says.
	bodyless := st.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	var done *stream
	cc.mu.Lock()
	if !bodyless {
		st.want = cl
	}
	if err := st.checkLength(f.StreamEnded()); err != nil {
		cc.mu.Unlock()
		cc.resetStream(st, http2.ErrCodeProtocol, err)
		return nil
	}
	st.gotHead = true
	st.rtrailer = &resp.Trailer
	if f.StreamEnded() {
		resp.Body = http.NoBody
		if cl < 0 && st.req.Method != http.MethodHead {
			// A HEAD response's length is its GET's: unknown unless
			// content-length says it (as net/http's transports have it).
			resp.ContentLength = 0
		}
		st.endRecv(io.EOF)
		done = cc.maybeClose(st)
	} else {
		st.body.st = st
		resp.Body = &st.body
	}
	st.resp = resp
	cc.mu.Unlock()
	st.notify()
	cc.closed(done)
	return nil
}

// onInterim queues an informational response for roundTrip to pass on:
// 103 Early Hints and the like; 100 Continue is not passed
// (netx.PassesInterim). More than netx.MaxInterims fail the request. A
// stream reset meanwhile (roundTrip gave up on it) queues nothing, so that
// no entry outlives it.
func (cc *clientConn) onInterim(st *stream, code int, fields []hpack.HeaderField) {
	if !netx.PassesInterim(code) {
		return
	}
	h, _, err := headerOf(fields, nil)
	if err != nil {
		cc.resetStream(st, http2.ErrCodeProtocol, err)
		return
	}
	cc.mu.Lock()
	if st.reset {
		cc.mu.Unlock()
		return
	}
	iq := cc.interims[st.id]
	if iq == nil {
		if cc.interims == nil {
			cc.interims = make(map[uint32]*interimQueue)
		}
		iq = &interimQueue{}
		cc.interims[st.id] = iq
	}
	if iq.n == netx.MaxInterims {
		cc.mu.Unlock()
		cc.resetStream(st, http2.ErrCodeProtocol, fmt.Errorf("h2: more than %d informational responses", netx.MaxInterims))
		return
	}
	iq.n++
	iq.q = append(iq.q, interimHead{code, h})
	cc.mu.Unlock()
	st.notify()
}

// onGoAway stops new streams; those above the last one the server will
// process fail as refused, to be retried elsewhere.
func (cc *clientConn) onGoAway(f *http2.GoAwayFrame) {
	debug := f.DebugData() // the framer's buffer: copied
	cc.goAway = &goAwayError{last: f.LastStreamID, code: f.ErrCode, debug: string(debug[:min(len(debug), maxDebug)])}
	cc.mu.Lock()
	cc.goingAway = true
	var refused []*stream
	for id, st := range cc.streams {
		if id > f.LastStreamID {
			refused = append(refused, st)
		}
	}
	idle := cc.active == 0
	cc.mu.Unlock()
	for _, st := range refused {
		cc.mu.Lock()
		st.reset, st.sentEnd = true, true
		st.endRecv(ErrRefused)
		done := cc.maybeClose(st)
		cc.mu.Unlock()
		cc.sendCond.Broadcast()
		cc.closed(done)
	}
	cc.cl.forget(cc)
	if idle {
		cc.close()
	}
}

// respBody is a response body.
type respBody struct{ st *stream }

func (b *respBody) Read(p []byte) (int, error) { return b.st.read(p) }
func (b *respBody) Close() error {
	b.st.closeRead(true)
	return nil
}
