package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// ctxWatch is how an exchange on u follows its request's context: a
// canceled context sets u's deadline in the past, so that its blocked
// reads and writes fail.
type ctxWatch struct {
	a    *netx.AbortCtx // the context u is registered with (no allocation),
	u    *upConn
	stop func() bool // or context.AfterFunc's stop
}

// follow has u follow ctx.
func follow(ctx context.Context, u *upConn) ctxWatch {
	if a, ok := ctx.(*netx.AbortCtx); ok && a.OnAbort(u) {
		return ctxWatch{a: a, u: u}
	}
	return ctxWatch{stop: context.AfterFunc(ctx, func() { u.Abort(nil) })}
}

// end stops following; it reports false when the context was canceled (u
// is then failing, and not to be reused).
func (w ctxWatch) end() bool {
	if w.a != nil {
		return w.a.StopAbort(w.u)
	}
	return w.stop()
}

// Abort implements netx.Aborter for an exchange's request context.
func (u *upConn) Abort(error) { _ = u.c.SetDeadline(time.Unix(1, 0)) }

// ErrUnsupported is returned by RoundTrip, before any I/O, for requests it
// leaves to http.Transport: protocol upgrades and Expect: 100-continue.
var ErrUnsupported = errors.New("h1: request needs http.Transport")

// supports reports whether RoundTrip handles r.
func supports(r *http.Request) bool {
	_, up := r.Header["Upgrade"]
	_, exp := r.Header["Expect"]
	return !up && !exp
}

// RoundTrip sends r as HTTP/1.1 on a pooled connection, in the calling
// goroutine (http.Transport uses two more per connection), and returns the
// response; reading its body to the end returns the connection to the pool.
// Cancelling r's context aborts the exchange.
func (p *Pool) RoundTrip(r *http.Request) (*http.Response, error) {
	if !supports(r) {
		return nil, ErrUnsupported
	}
	hasBody := r.Body != nil && r.Body != http.NoBody
	replay := !hasBody
	maxIdle := p.idleTimeout()
	if !replay {
		maxIdle = 2 * time.Second // see Server: a body sent once avoids stale connections
	}
	ctx := r.Context()
	for attempt := 0; ; attempt++ {
		var u *upConn
		if attempt == 0 {
			u = p.take(maxIdle)
		}
		if u == nil {
			var err error
			if u, err = p.dial(ctx); err != nil {
				return nil, fmt.Errorf("h1: connect: %w", err)
			}
		}
		// Cancellation interrupts blocked reads and writes without a
		// goroutine of our own.
		stop := follow(ctx, u)
		resp, err := p.exchange(u, r, hasBody)
		if err == nil {
			if resp.Body == http.NoBody {
				p.finish(u, stop, resp.Close || r.Close)
			} else {
				resp.Body.(*clientBody).stop = stop
			}
			return resp, nil
		}
		stop.end()
		_ = u.c.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("h1: %w", netx.Cause(ctx))
		}
		var se *sentError
		if u.reused && replay && attempt == 0 && !errors.As(err, &se) {
			continue // a pooled connection the upstream had closed: nothing was answered
		}
		return nil, err
	}
}

// sentError is a failure after response bytes arrived: never retried.
type sentError struct{ err error }

func (e *sentError) Error() string { return e.err.Error() }
func (e *sentError) Unwrap() error { return e.err }

// finish ends an exchange: the connection returns to the pool unless it
// must close or the context fired during the exchange.
func (p *Pool) finish(u *upConn, stop ctxWatch, closing bool) {
	s := u.send
	if s != nil {
		s.awaitFlush() // under the context's watch, which can end the write
	}
	closing = !stop.end() || closing
	if s != nil {
		s.mu.Lock()
		if !s.ended {
			// The response ended before the request body was sent:
			// sendBody decides when it ends (see bodySend). Closing now
			// ends it, and the upstream reads no more of the body.
			s.handed, s.closing = true, closing
			s.mu.Unlock()
			if closing {
				_ = u.c.Close()
			}
			return
		}
		closing = closing || s.err != nil
		s.mu.Unlock()
		u.send = nil
	}
	if closing {
		_ = u.c.Close()
		return
	}
	p.put(u)
}

// exchange writes r and reads the final response head.
func (p *Pool) exchange(u *upConn, r *http.Request, hasBody bool) (*http.Response, error) {
	w := u.bw
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	if !validHost(host) {
		return nil, fmt.Errorf("h1: invalid Host %q", host)
	}
	// Neither may end the request line's fields early (net/url leaves a
	// query as it is, spaces included).
	uri := r.URL.RequestURI()
	if !isToken(r.Method) || !validURI(uri) {
		return nil, fmt.Errorf("h1: invalid request line %q %q", r.Method, uri)
	}
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if err := writeHeader(w, r.Header, skipInRequest); err != nil {
		return nil, err
	}
	if r.Header.Get("Te") == "trailers" {
		w.WriteString("Te: trailers\r\n")
	}
	chunked := false
	switch {
	case r.ContentLength > 0:
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), r.ContentLength, 10))
		w.WriteString("\r\n")
	case hasBody:
		chunked = true
		w.WriteString("Transfer-Encoding: chunked\r\n")
		// The trailer fields announced (writeHeader leaves Trailer out:
		// only a chunked body has trailers).
		for _, v := range r.Header["Trailer"] {
			if !validValue(v) {
				return nil, fmt.Errorf("h1: invalid header field %q", "Trailer")
			}
			w.WriteString("Trailer: ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		w.WriteString("Content-Length: 0\r\n")
	}
	if r.Close {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	var now int64 // of a length-framed body, what went into w
	if hasBody && !chunked {
		var whole bool
		var err error
		if now, whole, err = writeBodyNow(w, r.Body, r.ContentLength); err != nil {
			return nil, err
		}
		hasBody = !whole
	}
	if hasBody {
		// The rest of the body goes on its own goroutine while the response
		// is read: an upstream may answer before it has read the body (a
		// 413, a 401, an echo that streams), and that answer reaches the
		// client as soon as it comes, as with a direct connection. w is
		// the sender's from here (see sendBody).
		u.send = &bodySend{endc: make(chan struct{})}
		go p.sendBody(u, r, chunked, now)
	} else if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("h1: send request: %w", err)
	}
	h := &u.head
	for interims := 0; ; interims++ {
		if err := h.ReadResponse(u.br); err != nil {
			if interims > 0 || len(h.Raw) > 0 { // the upstream has the request
				err = &sentError{err}
			} else if serr := u.sendFailed(); serr != nil {
				return nil, serr // the upstream went while the body was sent: its cause
			}
			return nil, fmt.Errorf("h1: read response: %w", err)
		}
		if h.Status == http.StatusSwitchingProtocols {
			return nil, &sentError{errors.New("h1: upstream switched protocols without an upgrade request")}
		}
		if h.Status >= 200 {
			break
		}
		// 103 Early Hints and the like are passed on (not 100 Continue:
		// netx.PassesInterim), at most netx.MaxInterims of them.
		if interims == netx.MaxInterims {
			return nil, &sentError{fmt.Errorf("h1: more than %d informational responses", netx.MaxInterims)}
		}
		if netx.PassesInterim(h.Status) {
			if err := netx.PassInterim(r.Context(), h.Status, h.httpHeader(false, nil)); err != nil {
				return nil, &sentError{fmt.Errorf("h1: pass on informational response %d: %w", h.Status, err)}
			}
		}
	}
	return p.response(u, r, h), nil
}

// validURI reports whether a request target has no whitespace or control
// character.
func validURI(uri string) bool {
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// writeBodyNow puts a body of length n into w's free space while reading
// it cannot block (netx.MayBlock), as a small body that came with its
// head can be read: head and body then leave in one write, and no
// goroutine sends the body. It returns how much of the body it put in w
// and whether that is all of it (sendBody sends the rest), or the error
// of a body that ended short or failed.
func writeBodyNow(w *bufio.Writer, body io.Reader, n int64) (done int64, whole bool, err error) {
	if n > int64(w.Available()) {
		return 0, false, nil
	}
	for done < n {
		if netx.MayBlock(body) {
			return done, false, nil
		}
		buf := w.AvailableBuffer()[:n-done]
		m, err := body.Read(buf)
		_, _ = w.Write(buf[:m]) // into its own free space: no write
		done += int64(m)
		switch {
		case err == io.EOF && done < n:
			return done, false, fmt.Errorf("h1: send request body: (%d of %d bytes): %w", done, n, io.ErrUnexpectedEOF)
		case err != nil && err != io.EOF:
			return done, false, fmt.Errorf("h1: send request body: %w", err)
		}
	}
	return done, true, nil
}

// flushWait bounds how long Pool.finish waits for a body's last flush.
const flushWait = 100 * time.Millisecond

// bodySend is the state of a request body sent on its own goroutine
// (sendBody) while the response is read. Whichever of the two ends last
// decides what becomes of the connection: the exchange (Pool.finish) when
// the body was sent first, as for nearly every request; sendBody when the
// response ended first (an early answer, or a stream the upstream answered
// as it read), so that a connection is reused only once both messages are
// complete, and nothing waits for the other.
type bodySend struct {
	mu       sync.Mutex
	flushing bool          // the whole body was read: its last bytes are being flushed
	ended    bool          // sendBody returned
	endc     chan struct{} // closed when it did
	err      error         // and failed
	handed   bool          // the response ended first: sendBody has the connection
	closing  bool          // and it is not to be reused
}

// sendBody sends the rest of r's body, chunk-encoded when chunked (of a
// length-framed one, the first done bytes are in u.bw already:
// writeBodyNow), and flushes. It runs on its own goroutine while the
// response is read, owning u.bw. On failure it closes the connection: an
// upstream that waits for the rest of the body would otherwise never
// answer the read that waits for it.
func (p *Pool) sendBody(u *upConn, r *http.Request, chunked bool, done int64) {
	s, w := u.send, u.bw // the exchange set both before it started this goroutine
	var err error
	if chunked {
		err = writeChunked(w, r.Body, &r.Trailer)
	} else {
		var n int64
		if n, err = copyN(w, r.Body, r.ContentLength-done); err != nil {
			err = fmt.Errorf("(%d of %d bytes): %w", done+n, r.ContentLength, err)
		}
	}
	if err == nil {
		s.mu.Lock()
		s.flushing = true
		s.mu.Unlock()
		err = w.Flush()
	}
	if err != nil {
		err = fmt.Errorf("h1: send request body: %w", err)
	}
	s.mu.Lock()
	s.ended, s.err = true, err
	close(s.endc)
	handed, closing := s.handed, s.closing
	s.mu.Unlock()
	switch {
	case err != nil || (handed && closing):
		// Recorded first: a read of the answer that the close fails
		// reports the body's error (sendFailed).
		_ = u.c.Close()
	case handed:
		u.send = nil
		p.put(u)
	}
}

// awaitFlush waits for a body whose last bytes are being written, nearly
// always done: the upstream answered. Waiting (a little: an upstream that
// stopped reading leaves it to sendBody), the connection goes on to the
// next request, which would otherwise find it still busy.
func (s *bodySend) awaitFlush() {
	s.mu.Lock()
	flushing := s.flushing && !s.ended
	s.mu.Unlock()
	if !flushing {
		return
	}
	t := time.NewTimer(flushWait)
	select {
	case <-s.endc:
	case <-t.C:
	}
	t.Stop()
}

// sendFailed returns the error of a body sender that has ended with one.
func (u *upConn) sendFailed() error {
	s := u.send
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// response builds the http.Response of head h.
func (p *Pool) response(u *upConn, r *http.Request, h *Head) *http.Response {
	// The response, its body and its header's values are one allocation.
	x := &struct {
		resp http.Response
		body clientBody
		vals [headVals]string
	}{}
	mode := h.responseBody(r.Method == http.MethodHead)
	resp := &x.resp
	*resp = http.Response{
		StatusCode: h.Status, Proto: protoName(h.Minor), ProtoMajor: 1, ProtoMinor: h.Minor,
		// A body of known length (or none, with the length a HEAD's GET
		// would have) keeps its Content-Length.
		Header: h.httpHeader(mode == bodyFixed || mode == bodyNone, x.vals[:]), Request: r, ContentLength: -1,
	}
	resp.Status = h.statusText()
	// Trailer announces the trailer fields: net/http lists them, empty, in
	// resp.Trailer before the body is read.
	declareTrailer(&resp.Trailer, resp.Header["Trailer"])
	resp.Close = h.Close || mode == bodyUntilClose || (h.Minor == 0 && !h.KeepAlive)
	switch mode {
	case bodyNone:
		resp.Body = http.NoBody
		if h.ContentLength >= 0 {
			resp.ContentLength = h.ContentLength
		} else if h.Status != http.StatusNoContent && h.Status != http.StatusNotModified && r.Method != http.MethodHead {
			resp.ContentLength = 0
		}
		return resp
	case bodyFixed:
		resp.ContentLength = h.ContentLength
	case bodyChunked:
		resp.TransferEncoding = []string{"chunked"}
		if resp.Trailer == nil {
			resp.Trailer = http.Header{}
		}
	}
	b := &x.body
	*b = clientBody{p: p, u: u, bodyReader: bodyReader{br: u.br, mode: mode, trailer: resp.Trailer}, closing: resp.Close || r.Close}
	if mode == bodyFixed {
		b.left = h.ContentLength
	}
	resp.Body = b
	return resp
}

// clientBody reads a response body off its connection and returns the
// connection to the pool at the end.
type clientBody struct {
	bodyReader
	p       *Pool
	u       *upConn
	stop    ctxWatch
	closing bool
	done    bool
	err     error
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.read(p)
	if err == io.EOF {
		b.done = true
		b.p.finish(b.u, b.stop, b.closing || b.mode == bodyUntilClose)
	}
	if err != nil {
		if err != io.EOF {
			err = fmt.Errorf("h1: read response body: %w", err)
			b.stop.end()
			_ = b.u.c.Close()
		}
		b.err = err
	}
	return n, err
}

// WouldBlock reports whether a Read may block (the optional capability
// h2.BufferedBody): a response's head is then sent on before its body.
// Only the goroutine that reads the body may call it.
func (b *clientBody) WouldBlock() bool {
	return b.err == nil && b.wouldBlock()
}

// Close releases the connection: to the pool after the whole body was
// read, else closed (the rest of the body is not drained).
func (b *clientBody) Close() error {
	if b.done || b.err != nil {
		return nil
	}
	b.err = errors.New("h1: read on closed response body")
	b.stop.end()
	return b.u.c.Close()
}

// declareTrailer lists in *trailer, made if nil, the names the Trailer
// field values vs announce, without values: net/http's way of telling
// which trailer fields to expect before the body is read.
func declareTrailer(trailer *http.Header, vs []string) {
	for _, v := range vs {
		tokens([]byte(v), func(t []byte) {
			if *trailer == nil {
				*trailer = http.Header{}
			}
			(*trailer)[textproto.CanonicalMIMEHeaderKey(string(t))] = nil
		})
	}
}
