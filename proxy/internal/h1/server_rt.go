package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// reqBody is a request body read off the client connection by the
// round tripper, possibly from its own goroutine. Once Close returned no
// Read runs or will run: the connection's reader is the server's again.
type reqBody struct {
	mu sync.Mutex // held by Read
	bodyReader
	err     error
	done    atomic.Bool // read to the end
	touched atomic.Bool // Read was called
	// ctx is the request's context, which a hang-up cancels, url its URL
	// and vals its header's values: in the same allocation as the body.
	ctx  netx.AbortCtx
	url  url.URL
	vals [headVals]string
}

var errBodyClosed = errors.New("h1: request body closed")

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if !b.touched.Load() {
		b.touched.Store(true)
	}
	n, err := b.read(p)
	if err != nil {
		if err == io.EOF {
			b.done.Store(true)
		}
		b.err = err
	}
	return n, err
}

// WouldBlock reports whether a Read may block (the optional capability
// h2.BufferedBody): what of the body is buffered then goes with the
// request's head. While a Read runs on another goroutine, it may.
func (b *reqBody) WouldBlock() bool {
	if !b.mu.TryLock() {
		return true
	}
	defer b.mu.Unlock()
	return b.err == nil && b.wouldBlock()
}

func (b *reqBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = errBodyClosed
	}
	return nil
}

// respHead lets an Observer see an http.Response.
type respHead http.Response

func (r *respHead) Code() int              { return r.StatusCode }
func (r *respHead) Get(name string) string { return r.Header.Get(name) }

// httpRequest builds the http.Request of the current request head, its
// context the body's ctx.
func (x *exchange) httpRequest(pool bool) (*http.Request, *reqBody, error) {
	h := &x.req
	b := &reqBody{bodyReader: bodyReader{br: x.br, mode: h.requestBody()}}
	if x.ictx == nil {
		x.ictx = netx.WithInterim(context.Background(), x)
	}
	b.ctx.SetParent(x.ictx)
	if err := netx.ParseTarget(h.Target(), &b.url); err != nil {
		return nil, nil, fmt.Errorf("h1: request target: %w", err)
	}
	r := http.Request{
		Method: h.Method(), URL: &b.url, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h.httpHeader(false, b.vals[:]), Host: h.Host(), RequestURI: h.Target(),
	}
	delete(r.Header, "Host")
	// The trailer fields announced, without the names the route drops:
	// Pool.RoundTrip sends the announcement on as it is; other round
	// trippers take the names from r.Trailer (net/http's HTTP/2 transport
	// announces and sends only those known before the body is sent).
	var kept []string
	if vs, ok := r.Header["Trailer"]; ok && b.mode == bodyChunked {
		kept = announced(vs, h.dropTrailers)
	}
	delete(r.Header, "Trailer")
	if pool && len(kept) > 0 {
		r.Header["Trailer"] = kept
	}
	switch b.mode {
	case bodyNone:
		r.Body, r.ContentLength = http.NoBody, 0
		b.done.Store(true)
	case bodyFixed:
		b.left, r.ContentLength = h.ContentLength, h.ContentLength
		r.Body = b
	case bodyChunked:
		r.ContentLength = -1
		r.Trailer = http.Header{}
		if !pool {
			declareTrailer(&r.Trailer, kept)
		}
		b.trailer, b.drop = r.Trailer, h.dropTrailers
		r.Body = b
	}
	// r stays on the stack: the one http.Request allocated is WithContext's.
	return r.WithContext(&b.ctx), b, nil
}

// forwardRT runs one exchange through call.RoundTrip.
func (x *exchange) forwardRT(call *Call) (keep bool) {
	r, body, err := x.httpRequest(call.Pool != nil)
	if err != nil {
		return x.fail(call, http.StatusBadRequest, err, x.skipBody())
	}
	// A hang-up cancels the round trip (see hangup); so does the end of
	// the exchange, as for any context.
	defer body.ctx.Cancel(nil)
	if body.mode == bodyNone {
		x.watchReady(x.br.Buffered())
	} else {
		x.watchBody(body)
	}
	x.watchAbort(&body.ctx, nil)
	resp, err := x.roundTrip(call, r, &body.ctx)
	// The request body may still be read by the round tripper's goroutine:
	// the client connection's reader is ours again once it is closed. A
	// Read blocked on the client is woken by a past deadline (the
	// connection then closes, its body unread; ServeConn resets the
	// deadline before the next request otherwise).
	waitBody := func() bool {
		if body.mode == bodyNone {
			return true
		}
		if !body.done.Load() {
			_ = x.c.SetReadDeadline(time.Unix(1, 0))
		}
		_ = body.Close()
		return body.done.Load()
	}
	for err != nil && errors.Is(err, netx.ErrUnsent) {
		// A request whose body is still unread on the client connection
		// (or that has none) can be forwarded again from its head.
		if body.mode == bodyNone || !body.touched.Load() {
			if next, ok := reroute(call, err); ok {
				return x.forward(&next)
			}
			break
		}
		// Its body was read, and restored on r (netx.ErrUnsent): r goes
		// as it is, to a call that takes an http.Request.
		next, ok := reroute(call, err)
		if !ok {
			break
		}
		call = &next
		if call.RoundTrip == nil {
			return x.fail(call, http.StatusBadGateway, err, waitBody())
		}
		resp, err = x.roundTrip(call, r, &body.ctx)
	}
	if err != nil {
		return x.fail(call, http.StatusBadGateway, err, waitBody())
	}
	if call.Obs != nil {
		call.Obs.ResponseHead((*respHead)(resp))
	}
	if !body.done.Load() {
		// Answered before the whole request body was sent (an early error,
		// or a stream): the connection cannot carry another request.
		x.closing = true
	}
	err = x.writeHTTPResponse(resp, x.req.IsHEAD())
	_ = resp.Body.Close()
	if !waitBody() {
		// The rest of the request body is still on the connection.
		x.closing, x.unread = true, true
	}
	if call.Obs != nil {
		call.Obs.Done(resp.StatusCode, err)
	}
	return err == nil && !x.closing
}

// writeHTTPResponse writes resp to the client as HTTP/1.1: with its length
// when known and no trailers are announced, else chunked with its trailers.
func (x *exchange) writeHTTPResponse(resp *http.Response, head bool) error {
	w := x.bw
	if x.s.draining.Load() {
		x.closing = true
	}
	code := resp.StatusCode
	noBody := head || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	chunked := !noBody && (resp.ContentLength < 0 || len(resp.Trailer) > 0)
	writeStatusLine(w, code)
	if err := writeHeader(w, resp.Header, skipInResponse); err != nil {
		return err
	}
	if len(resp.Trailer) > 0 { // nearly never: the header lookup is left off the common path
		if _, ok := resp.Header["Trailer"]; !ok {
			announceTrailer(w, resp.Trailer)
		}
	}
	switch {
	case chunked:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case resp.ContentLength >= 0 && (!noBody || head):
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), resp.ContentLength, 10))
		w.WriteString("\r\n")
	}
	if x.closing {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	if noBody {
		if err := w.Flush(); err != nil {
			return &writeError{err}
		}
		return nil
	}
	var err error
	if chunked {
		err = writeChunked(w, resp.Body, &resp.Trailer)
	} else {
		_, err = copyN(w, resp.Body, resp.ContentLength)
	}
	if err != nil && !isWriteError(err) {
		// The upstream failed mid-body: what it sent (the head at least)
		// goes to the client before the connection closes, without the end
		// of the body, so the client sees a response cut short, as it
		// would have without the proxy, rather than none at all (which
		// an HTTP client may take as a stale connection and send again).
		_ = w.Flush()
		return err
	}
	if err == nil {
		err = w.Flush()
	}
	return err
}

// announceTrailer writes the Trailer field naming the keys of trailer, in
// order (those that are no token left out). net/http's transports move a
// response's announcement there (its HTTP/2 one on every response), where
// the h2 client and Pool leave it in the header: without it, the client of
// a HEAD response would not learn of the trailers, nor a client that
// reads only announced ones of those that follow a chunked body.
func announceTrailer(w *bufio.Writer, trailer http.Header) {
	keys := make([]string, 0, len(trailer))
	for k := range trailer {
		if isToken(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	slices.Sort(keys)
	w.WriteString("Trailer: ")
	for i, k := range keys {
		if i > 0 {
			w.WriteString(", ")
		}
		w.WriteString(k)
	}
	w.WriteString("\r\n")
}

// writeStatusLine writes the HTTP/1.1 status line of code.
func writeStatusLine(w *bufio.Writer, code int) {
	w.WriteString("HTTP/1.1 ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(code), 10))
	w.WriteByte(' ')
	w.WriteString(http.StatusText(code))
	w.WriteString("\r\n")
}

// roundTrip runs call.RoundTrip(r) for the request whose context is a:
// until it returns, Interim writes a's informational responses.
func (x *exchange) roundTrip(call *Call, r *http.Request, a *netx.AbortCtx) (*http.Response, error) {
	x.imu.Lock()
	x.icur = a
	x.imu.Unlock()
	resp, err := call.RoundTrip(r)
	x.imu.Lock()
	x.icur = nil
	x.imu.Unlock()
	return resp, err
}

var errLateInterim = errors.New("h1: informational response after the round trip")

// Interim implements netx.Interim for the request's round tripper: an
// informational response it received goes to the client before the final
// one, flushed, while the round trip runs (roundTrip); after, it is
// refused, as the exchange then writes, or the connection serves another
// request. (The fast path serves HTTP/1.1 only: an HTTP/1.0 client, which
// must get no 1xx, never has an exchange.)
func (x *exchange) Interim(a *netx.AbortCtx, code int, h http.Header) error {
	x.imu.Lock()
	defer x.imu.Unlock()
	if a != x.icur {
		return errLateInterim
	}
	// Checked before a byte is buffered, by writeHeader on a writer that
	// discards: the exchange answers the failure on the same writer.
	if err := writeHeader(bufio.NewWriterSize(io.Discard, 16), h, skipInResponse); err != nil {
		return fmt.Errorf("%w in an informational response", err)
	}
	w := x.bw
	writeStatusLine(w, code)
	_ = writeHeader(w, h, skipInResponse) // checked above
	w.WriteString("\r\n")
	if err := w.Flush(); err != nil {
		return &writeError{err}
	}
	return nil
}

// isWriteError reports whether err is a failure writing to the client
// (writeError) rather than reading the upstream.
func isWriteError(err error) bool {
	var werr *writeError
	return errors.As(err, &werr)
}
