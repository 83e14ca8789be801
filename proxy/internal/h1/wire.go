package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// This file is what the two bridges to net/http share: a message body
// decoded off a connection (bodyReader), an http.Header from a parsed head
// and back to the wire, and a body written chunked with its trailers.

// bodyReader decodes a message body framed as mode from br.
type bodyReader struct {
	br   *bufio.Reader
	mode bodyMode
	// left is, for bodyFixed, the bytes left; for bodyChunked, the bytes
	// left in the current chunk.
	left int64
	// trailer receives the trailer fields of a chunked body, but those
	// named in drop.
	trailer http.Header
	drop    []string
}

// read is io.Reader's Read; it returns io.EOF with the last bytes of a
// fixed-length body.
func (b *bodyReader) read(p []byte) (int, error) {
	switch b.mode {
	case bodyNone:
		return 0, io.EOF
	case bodyUntilClose:
		return b.br.Read(p)
	case bodyFixed:
		if b.left == 0 {
			return 0, io.EOF
		}
		n, err := b.readData(p)
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
			return 0, trailerLines(nil, b.br, b.addTrailer)
		}
		b.left = size
	}
	n, err := b.readData(p)
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

// wouldBlock reports whether read may block: it has not ended, and what
// is buffered does not take it through its next step (a chunk's data and
// the line ending after it, a whole chunk-size line and the data or, for
// the last chunk, the trailer section after it). It errs on the side of
// "may": a read it calls blocking might not be.
func (b *bodyReader) wouldBlock() bool {
	if b.mode == bodyNone || b.mode == bodyFixed && b.left == 0 {
		return false
	}
	n := b.br.Buffered()
	if n == 0 {
		return true
	}
	if b.mode != bodyChunked {
		return false
	}
	buf, _ := b.br.Peek(n)
	if b.left > 0 {
		return !chunkDataReady(buf, b.left)
	}
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return true
	}
	size, err := chunkSize(bytes.TrimSuffix(buf[:i], []byte("\r")))
	rest := buf[i+1:]
	switch {
	case err != nil:
		return false // read fails at once
	case size == 0:
		return !bytes.HasPrefix(rest, []byte("\r\n")) && !bytes.Contains(rest, []byte("\n\r\n"))
	}
	return len(rest) == 0 || !chunkDataReady(rest, size)
}

// chunkDataReady reports whether reading a chunk's left bytes of data out
// of buf does not block: buf ends inside the data, or holds its line ending
// too.
func chunkDataReady(buf []byte, left int64) bool {
	return int64(len(buf)) < left || int64(len(buf)) >= left+2
}

// readData reads at most left bytes; the connection ending first is
// io.ErrUnexpectedEOF.
func (b *bodyReader) readData(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *bodyReader) addTrailer(line []byte, colon int) error {
	if droppedTrailer(b.drop, line[:colon]) {
		return nil
	}
	k := textproto.CanonicalMIMEHeaderKey(string(line[:colon]))
	b.trailer[k] = append(b.trailer[k], string(bytes.Trim(line[colon+1:], " \t")))
	return nil
}

// trailerLines reads the trailer section of a chunked body up to its blank
// line, checking each field and passing it to fn (line without its line
// ending, index of the colon). w, if not nil, is flushed before blocking.
func trailerLines(w *bufio.Writer, br *bufio.Reader, fn func(line []byte, colon int) error) error {
	total := 0
	for {
		line, err := chunkLine(w, br, false)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return io.EOF
		}
		if total += len(line); total > MaxHeadBytes {
			return fmt.Errorf("%w: trailer larger than %d bytes", errBadChunk, MaxHeadBytes)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return fmt.Errorf("%w: bad trailer field", errBadChunk)
		}
		if err := fn(line, colon); err != nil {
			return err
		}
	}
}

// httpHeader returns the head's forwarded fields (kept and added) as an
// http.Header, without the body framing fields; withLength adds its
// Content-Length, when it has one, as the number's shortest text. The
// values are kept in vals (the caller's, in an allocation it makes anyway)
// when they fit.
func (h *Head) httpHeader(withLength bool, vals []string) http.Header {
	raw := h.rawText()
	n := len(h.fields) + len(h.add)/2 // at most; dropped fields leave room unused
	withLength = withLength && h.ContentLength >= 0
	if withLength {
		n++
	}
	hdr := make(http.Header, n)
	// One backing array for the values: a name's first value takes a
	// one-element slice of it instead of an allocation of its own. Names
	// and values are slices of raw (a canonical name is not copied).
	if n > len(vals) {
		vals = make([]string, n)
	}
	i := 0
	put := func(k, v string) {
		if k == "Content-Length" || k == "Transfer-Encoding" {
			return
		}
		if vs, ok := hdr[k]; ok {
			hdr[k] = append(vs, v)
			return
		}
		vals[i] = v
		hdr[k] = vals[i : i+1 : i+1]
		i++
	}
	for _, f := range h.fields {
		if !f.drop {
			put(textproto.CanonicalMIMEHeaderKey(raw[f.name.a:f.name.b]), raw[f.value.a:f.value.b])
		}
	}
	for j := 0; j+1 < len(h.add); j += 2 {
		put(textproto.CanonicalMIMEHeaderKey(h.add[j]), h.add[j+1])
	}
	if withLength {
		// The field's own text (contentLength accepted digits only),
		// unless leading zeros make it longer than the number's.
		v := raw[h.cl.a:h.cl.b]
		if len(v) > 1 && v[0] == '0' {
			v = strconv.FormatInt(h.ContentLength, 10)
		}
		vals[i] = v
		hdr["Content-Length"] = vals[i : i+1 : i+1]
	}
	return hdr
}

// hopHeaders are not forwarded (RFC 9110 7.6.1); the framing fields and
// Host are written from the message itself. netx.HeaderUnsent is
// hop-by-hop between two proxies.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Host": true, netx.HeaderUnsent: true,
}

// skipInRequest and skipInResponse say which fields writeHeader leaves out;
// a response keeps Trailer, which announces its trailer fields.
func skipInRequest(k string) bool  { return hopHeaders[k] }
func skipInResponse(k string) bool { return k != "Trailer" && hopHeaders[k] }

// writeHeader writes the fields of hdr that skip (if not nil) keeps,
// refusing a name or value that would break the framing.
func writeHeader(w *bufio.Writer, hdr http.Header, skip func(string) bool) error {
	for k, vs := range hdr {
		if skip != nil && skip(k) {
			continue
		}
		for _, v := range vs {
			if v == "" && k == "User-Agent" {
				continue // net/http's "send none" (netx.NoDefaultUserAgent)
			}
			if !isToken(k) || !validValue(v) {
				return fmt.Errorf("h1: invalid header field %q", k)
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	return nil
}

// validValue rejects what would break the message framing.
func validValue(s string) bool {
	return !strings.ContainsAny(s, "\r\n\x00")
}

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// writeChunked copies body to w chunk-encoded, flushing each chunk (a
// stream passes through as it comes), then the last chunk with the fields
// *trailer holds once body ended. A failed write is a *writeError.
func writeChunked(w *bufio.Writer, body io.Reader, trailer *http.Header) error {
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	buf := *bp
	for {
		if err := flushBeforeBlock(w, body); err != nil {
			return err
		}
		n, err := body.Read(buf)
		if n > 0 {
			w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(n), 16))
			w.WriteString("\r\n")
			w.Write(buf[:n])
			w.WriteString("\r\n")
			if ferr := w.Flush(); ferr != nil {
				return &writeError{ferr}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("h1: read body: %w", err)
		}
	}
	w.WriteString("0\r\n")
	if err := writeHeader(w, *trailer, nil); err != nil {
		return err
	}
	w.WriteString("\r\n")
	return nil
}

// headVals is how many header values a request's or response's own
// allocation holds (see httpHeader): a head with more fields allocates
// an array for them.
const headVals = 8
