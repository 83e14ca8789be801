package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// reqBody is a request body read off the client connection by the
// round tripper, possibly from its own goroutine. Once Close returned no
// Read runs or will run: the connection's reader is the server's again.
type reqBody struct {
	br      *bufio.Reader
	mode    bodyMode
	left    int64 // fixed: bytes left; chunked: bytes left in the chunk
	trailer http.Header
	done    atomic.Bool // read to the end
	mu      sync.Mutex  // held by Read
	err     error
}

var errBodyClosed = errors.New("h1: request body closed")

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
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

func (b *reqBody) read(p []byte) (int, error) {
	switch b.mode {
	case bodyNone:
		return 0, io.EOF
	case bodyFixed:
		if b.left == 0 {
			return 0, io.EOF
		}
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err := b.br.Read(p)
		b.left -= int64(n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == nil && b.left == 0 {
			err = io.EOF
		}
		return n, err
	}
	if b.left == 0 {
		line, err := chunkLine(nil, b.br, true)
		if err != nil {
			return 0, err
		}
		size, err := chunkSize(line)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			return 0, readTrailer(b.br, b.trailer)
		}
		b.left = size
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	if err == nil && b.left == 0 {
		end, err := chunkLine(nil, b.br, true)
		if err != nil {
			return n, err
		}
		if len(end) != 0 {
			return n, fmt.Errorf("%w: chunk data longer than its size", errBadChunk)
		}
	}
	return n, err
}

func (b *reqBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = errBodyClosed
	}
	return nil
}

// readTrailer reads a trailer section into t (which may be nil: the fields
// are then checked and dropped); io.EOF when done.
func readTrailer(br *bufio.Reader, t http.Header) error {
	total := 0
	for {
		line, err := chunkLine(nil, br, false)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return io.EOF
		}
		if total += len(line); total > MaxHeadBytes {
			return fmt.Errorf("%w: trailer larger than %d bytes", errBadChunk, MaxHeadBytes)
		}
		i := indexColon(line)
		if i <= 0 || !isToken(line[:i]) {
			return fmt.Errorf("%w: bad trailer field", errBadChunk)
		}
		if t != nil {
			k := textproto.CanonicalMIMEHeaderKey(string(line[:i]))
			t[k] = append(t[k], string(trimOWS(line[i+1:])))
		}
	}
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// respHead lets an Observer see an http.Response.
type respHead http.Response

func (r *respHead) Code() int              { return r.StatusCode }
func (r *respHead) Get(name string) string { return r.Header.Get(name) }

// httpRequest builds the http.Request of the current request head.
func (x *exchange) httpRequest() (*http.Request, *reqBody, error) {
	h := &x.req
	u, err := url.ParseRequestURI(h.Target())
	if err != nil {
		return nil, nil, fmt.Errorf("h1: request target: %w", err)
	}
	r := &http.Request{
		Method: h.Method(), URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, len(h.fields)+len(h.add)/2), Host: h.Host(), RequestURI: h.Target(),
	}
	for _, f := range h.fields {
		if f.drop {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(string(h.Raw[f.name.a:f.name.b]))
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		r.Header[k] = append(r.Header[k], string(h.Raw[f.value.a:f.value.b]))
	}
	for i := 0; i+1 < len(h.add); i += 2 {
		k := textproto.CanonicalMIMEHeaderKey(h.add[i])
		r.Header[k] = append(r.Header[k], h.add[i+1])
	}
	b := &reqBody{br: x.br, mode: h.requestBody()}
	switch b.mode {
	case bodyNone:
		r.Body, r.ContentLength = http.NoBody, 0
		b.done.Store(true)
		return r, b, nil
	case bodyFixed:
		b.left, r.ContentLength = h.ContentLength, h.ContentLength
	case bodyChunked:
		r.ContentLength = -1
		b.trailer = http.Header{}
		r.Trailer = b.trailer
	}
	r.Body = b
	return r, b, nil
}

// forwardRT runs one exchange through call.RoundTrip.
func (x *exchange) forwardRT(call *Call) (keep bool) {
	r, body, err := x.httpRequest()
	if err != nil {
		return x.fail(call, http.StatusBadRequest, err, x.skipBody())
	}
	resp, err := call.RoundTrip(r)
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
		x.closing = true // the rest of the request body is still on the connection
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
	w.WriteString("HTTP/1.1 ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(code), 10))
	w.WriteByte(' ')
	w.WriteString(http.StatusText(code))
	w.WriteString("\r\n")
	for k, vs := range resp.Header {
		if hopHeaders[k] && k != "Trailer" {
			continue
		}
		for _, v := range vs {
			if !validValue(k) || !validValue(v) {
				return fmt.Errorf("h1: invalid response header field %q", k)
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
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
	if !chunked {
		n, err := io.CopyN(w, resp.Body, resp.ContentLength)
		if err == nil {
			err = w.Flush()
		} else if n < resp.ContentLength {
			x.closing = true // the client cannot tell the response was cut short otherwise
		}
		return err
	}
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(n), 16))
			w.WriteString("\r\n")
			w.Write(buf[:n])
			w.WriteString("\r\n")
			if ferr := w.Flush(); ferr != nil { // streams (gRPC-web, SSE) pass through as they come
				return &writeError{ferr}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			x.closing = true // no final chunk: the client sees the response cut short
			return err
		}
	}
	w.WriteString("0\r\n")
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			if validValue(k) && validValue(v) {
				w.WriteString(k)
				w.WriteString(": ")
				w.WriteString(v)
				w.WriteString("\r\n")
			}
		}
	}
	w.WriteString("\r\n")
	if err := w.Flush(); err != nil {
		return &writeError{err}
	}
	return nil
}
