package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// MaxHeadBytes bounds a message head (request or status line and fields).
const MaxHeadBytes = 64 << 10

// maxFields bounds the number of header fields of a head.
const maxFields = 256

// Errors of head parsing. A request head that fails with one of them is
// handed over to the general path, which answers it.
var (
	ErrHeadTooLarge = errors.New("h1: message head larger than 64 KiB")
	ErrMalformed    = errors.New("h1: malformed message head")
)

type span struct{ a, b int }

type field struct {
	name, value span
	drop        bool
}

// Head is one parsed HTTP/1.x message head. Raw keeps the bytes as read, so
// that a connection can be handed over with them.
type Head struct {
	Raw []byte
	// text is Raw as a string, copied on first use (see rawText): the
	// strings a head hands out (method, target, field values) are slices of it.
	text string

	method, target, reason span
	// Minor is the x of HTTP/1.x.
	Minor int
	// Status is the response status code (responses only).
	Status int

	fields []field
	add    []string // name, value pairs added by the proxy
	// dropTrailers names the trailer fields of a chunked body that are
	// not forwarded (see DropTrailer).
	dropTrailers []string

	// ContentLength is the declared body length, -1 when none.
	ContentLength int64
	// Chunked: the last (and only) transfer coding is chunked.
	Chunked bool
	// OtherTE: a transfer coding other than a lone chunked.
	OtherTE bool
	// Close: the sender asked to close the connection after this message.
	Close bool
	// KeepAlive: the sender asked to keep the connection (HTTP/1.0).
	KeepAlive bool
	// ConnTokens: Connection names tokens other than close and keep-alive
	// (upgrade or hop-by-hop fields).
	ConnTokens bool
	Upgrade    bool
	Expect     bool
	// Unsent: the head carried netx.HeaderUnsent, which is dropped (it is
	// hop-by-hop: it never travels on).
	Unsent     bool
	hosts      int
	host       span
	cl         span // the first Content-Length value
	teTrailers bool
}

// persistent reports whether the connection stays open after this
// message: HTTP/1.1 without Connection: close, or HTTP/1.0 keep-alive.
func (h *Head) persistent() bool { return !h.Close && (h.Minor == 1 || h.KeepAlive) }

func (h *Head) reset() {
	h.Raw = h.Raw[:0]
	h.text = ""
	h.fields = h.fields[:0]
	h.add = h.add[:0]
	clear(h.dropTrailers) // the names are the caller's: not kept alive past the head
	h.dropTrailers = h.dropTrailers[:0]
	h.method, h.target, h.reason, h.host, h.cl = span{}, span{}, span{}, span{}, span{}
	h.Minor, h.Status, h.hosts = 0, 0, 0
	h.ContentLength = -1
	h.Chunked, h.OtherTE, h.Close, h.KeepAlive, h.ConnTokens, h.Upgrade, h.Expect, h.Unsent, h.teTrailers =
		false, false, false, false, false, false, false, false, false
}

func (h *Head) str(s span) string { return h.rawText()[s.a:s.b] }

// rawText returns Raw as a string, copying it on first use: one allocation
// per head for all of its strings instead of one per string.
func (h *Head) rawText() string {
	if len(h.text) != len(h.Raw) {
		h.text = string(h.Raw)
	}
	return h.text
}

// Method returns the request method.
func (h *Head) Method() string { return h.str(h.method) }

// IsHEAD tells whether the request method is HEAD, without allocating.
func (h *Head) IsHEAD() bool { return string(h.Raw[h.method.a:h.method.b]) == "HEAD" }

// Target returns the request target as sent (origin-form: path and query).
func (h *Head) Target() string { return h.str(h.target) }

// Host returns the Host field.
func (h *Head) Host() string { return h.str(h.host) }

// Get returns the first value of the field name (case-insensitive), or "".
func (h *Head) Get(name string) string {
	for _, f := range h.fields {
		if !f.drop && bytes.EqualFold(h.Raw[f.name.a:f.name.b], []byte(name)) {
			return h.str(f.value)
		}
	}
	return ""
}

// Drop removes every field called name from the forwarded head.
func (h *Head) Drop(name string) {
	for i := range h.fields {
		f := &h.fields[i]
		if bytes.EqualFold(h.Raw[f.name.a:f.name.b], []byte(name)) {
			f.drop = true
		}
	}
}

// dropName is Drop for a name read off the wire.
func (h *Head) dropName(name []byte) {
	for i := range h.fields {
		f := &h.fields[i]
		if bytes.EqualFold(h.Raw[f.name.a:f.name.b], name) {
			f.drop = true
		}
	}
}

// Add appends a field to the forwarded head; value must be a valid field value.
func (h *Head) Add(name, value string) { h.add = append(h.add, name, value) }

// DropTrailer removes every trailer field called name (case-insensitive)
// from the request's chunked body as it is forwarded, on a Pool as through
// a RoundTrip, and name from the Trailer fields of the head written to a
// Pool, which announce them (a Trailer field left naming nothing is
// dropped; the RoundTrip's request has no Trailer field). The list is the
// head's until its next read, and reused: a Router calling it for every
// request allocates nothing once it grew.
func (h *Head) DropTrailer(name string) { h.dropTrailers = append(h.dropTrailers, name) }

// droppedTrailer reports whether a trailer field called name is in drop.
func droppedTrailer(drop []string, name []byte) bool {
	for _, d := range drop {
		if equalFoldASCII(name, d) {
			return true
		}
	}
	return false
}

// isTrailerField reports whether f is a Trailer field, which announces
// trailer fields.
func (h *Head) isTrailerField(f field) bool {
	return equalFoldASCII(h.Raw[f.name.a:f.name.b], "Trailer")
}

// writeTrailerField writes a Trailer field with value v less the names in
// drop, or nothing when none is left; its tokens are rejoined with ", ".
func writeTrailerField(w *bufio.Writer, name, v []byte, drop []string) {
	first := true
	tokens(v, func(t []byte) {
		if droppedTrailer(drop, t) {
			return
		}
		if first {
			w.Write(name)
			w.WriteString(": ")
			first = false
		} else {
			w.WriteString(", ")
		}
		w.Write(t)
	})
	if !first {
		w.WriteString("\r\n")
	}
}

// announced returns the values vs of Trailer fields without the names in
// drop, nil when none is left.
func announced(vs []string, drop []string) []string {
	var kept []string
	for _, v := range vs {
		var b []byte
		tokens([]byte(v), func(t []byte) {
			if droppedTrailer(drop, t) {
				return
			}
			if len(b) > 0 {
				b = append(b, ", "...)
			}
			b = append(b, t...)
		})
		if len(b) > 0 {
			kept = append(kept, string(b))
		}
	}
	return kept
}

// equalFoldASCII is bytes.EqualFold for an ASCII name (a field name is a
// token), without converting s.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// readLine appends one line (up to and including LF) to Raw and returns it
// without its line ending.
func (h *Head) readLine(br *bufio.Reader) (span, error) {
	start := len(h.Raw)
	for {
		b, err := br.ReadSlice('\n')
		if len(h.Raw)+len(b) > MaxHeadBytes {
			h.Raw = append(h.Raw, b...)
			return span{}, ErrHeadTooLarge
		}
		h.Raw = append(h.Raw, b...)
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(h.Raw) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return span{}, err
	}
	end := len(h.Raw) - 1 // the LF
	if end > start && h.Raw[end-1] == '\r' {
		end--
	}
	return span{start, end}, nil
}

// ReadRequest reads and parses a request head. io.EOF means the connection
// ended cleanly before a request; ErrMalformed and ErrHeadTooLarge mean the
// head is not one this package forwards (Raw then holds what was read).
func (h *Head) ReadRequest(br *bufio.Reader) error {
	h.reset()
	// RFC 9112 2.2 lets a server skip empty lines before the request line;
	// net/http does not, and the fast path must not accept what the general
	// path refuses, so they are malformed here too.
	line, err := h.readLine(br)
	if err != nil {
		return err
	}
	if err := h.parseRequestLine(line); err != nil {
		return err
	}
	return h.readFields(br)
}

// ReadResponse reads and parses a response head.
func (h *Head) ReadResponse(br *bufio.Reader) error {
	h.reset()
	line, err := h.readLine(br)
	if err != nil {
		return err
	}
	if err := h.parseStatusLine(line); err != nil {
		return err
	}
	if err := h.readFields(br); err != nil {
		return err
	}
	h.dropResponseFields()
	return nil
}

// dropResponseFields keeps from being forwarded, as HTTP/1.1, the fields of
// a response head that are hop-by-hop or do not frame its body here:
//   - the fields its Connection names (RFC 9110 7.6.1), but not the framing
//     fields, by which the body is still copied as it is;
//   - Transfer-Encoding of HTTP/1.0, which has no transfer codings: the body
//     is read by its length or until close, and a client reading it chunked
//     would take bytes of the body for the next response;
//   - Content-Length next to a transfer coding, which overrides it (RFC 9112
//     6.3: a sender must remove it).
func (h *Head) dropResponseFields() {
	te := h.Chunked || h.OtherTE
	switch {
	case te && h.Minor == 0:
		h.Drop("Transfer-Encoding")
	case te && h.ContentLength >= 0:
		h.Drop("Content-Length")
	}
	if !h.ConnTokens {
		return
	}
	for _, f := range h.fields {
		if !bytes.EqualFold(h.Raw[f.name.a:f.name.b], []byte("Connection")) {
			continue
		}
		tokens(h.Raw[f.value.a:f.value.b], func(t []byte) {
			if !bytes.EqualFold(t, []byte("Content-Length")) && !bytes.EqualFold(t, []byte("Transfer-Encoding")) {
				h.dropName(t)
			}
		})
	}
}

func (h *Head) readFields(br *bufio.Reader) error {
	for {
		line, err := h.readLine(br)
		if err != nil {
			return err
		}
		if line.a == line.b {
			return nil
		}
		if len(h.fields) == maxFields {
			return ErrHeadTooLarge
		}
		if err := h.parseField(line); err != nil {
			return err
		}
	}
}

func (h *Head) parseRequestLine(l span) error {
	b := h.Raw[l.a:l.b]
	sp1 := bytes.IndexByte(b, ' ')
	if sp1 <= 0 || !isToken(b[:sp1]) {
		return fmt.Errorf("%w: bad method", ErrMalformed)
	}
	rest := b[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return fmt.Errorf("%w: bad request line", ErrMalformed)
	}
	for _, c := range rest[:sp2] {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: bad request target", ErrMalformed)
		}
	}
	minor, ok := version(rest[sp2+1:])
	if !ok {
		return fmt.Errorf("%w: bad version", ErrMalformed)
	}
	h.method = span{l.a, l.a + sp1}
	h.target = span{l.a + sp1 + 1, l.a + sp1 + 1 + sp2}
	h.Minor = minor
	return nil
}

func (h *Head) parseStatusLine(l span) error {
	b := h.Raw[l.a:l.b]
	if len(b) < 12 || b[8] != ' ' {
		return fmt.Errorf("%w: bad status line", ErrMalformed)
	}
	minor, ok := version(b[:8])
	if !ok {
		return fmt.Errorf("%w: bad version", ErrMalformed)
	}
	code := 0
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: bad status code", ErrMalformed)
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return fmt.Errorf("%w: bad status code", ErrMalformed)
	}
	if len(b) > 12 {
		if b[12] != ' ' {
			return fmt.Errorf("%w: bad status line", ErrMalformed)
		}
		for _, c := range b[13:] {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return fmt.Errorf("%w: bad reason phrase", ErrMalformed)
			}
		}
		h.reason = span{l.a + 13, l.b}
	}
	h.Minor, h.Status = minor, code
	return nil
}

func version(b []byte) (int, bool) {
	switch string(b) {
	case "HTTP/1.1":
		return 1, true
	case "HTTP/1.0":
		return 0, true
	}
	return 0, false
}

func (h *Head) parseField(l span) error {
	b := h.Raw[l.a:l.b]
	colon := bytes.IndexByte(b, ':')
	if colon <= 0 || !isToken(b[:colon]) {
		// Also rejects obs-fold (a line starting with SP or HTAB) and
		// whitespace between the name and the colon.
		return fmt.Errorf("%w: bad field name", ErrMalformed)
	}
	va, vb := colon+1, len(b)
	for va < vb && (b[va] == ' ' || b[va] == '\t') {
		va++
	}
	for vb > va && (b[vb-1] == ' ' || b[vb-1] == '\t') {
		vb--
	}
	for _, c := range b[va:vb] {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("%w: bad field value", ErrMalformed)
		}
	}
	f := field{name: span{l.a, l.a + colon}, value: span{l.a + va, l.a + vb}}
	name, value := b[:colon], b[va:vb]
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		if err := h.contentLength(value, f.value); err != nil {
			return err
		}
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		h.transferEncoding(value)
	case bytes.EqualFold(name, []byte("Connection")):
		f.drop = true
		tokens(value, func(t []byte) {
			switch {
			case bytes.EqualFold(t, []byte("close")):
				h.Close = true
			case bytes.EqualFold(t, []byte("keep-alive")):
				h.KeepAlive = true
			default:
				h.ConnTokens = true
			}
		})
	case bytes.EqualFold(name, []byte("Keep-Alive")), bytes.EqualFold(name, []byte("Proxy-Connection")):
		f.drop = true
	case bytes.EqualFold(name, []byte("TE")):
		// Only "trailers" travels on (gRPC-style); other codings are hop-by-hop.
		f.drop = !bytes.EqualFold(value, []byte("trailers"))
	case bytes.EqualFold(name, []byte("Upgrade")):
		h.Upgrade = true
	case bytes.EqualFold(name, []byte("Expect")):
		h.Expect = true
	case len(name) == len(netx.HeaderUnsent) && bytes.EqualFold(name, []byte(netx.HeaderUnsent)):
		h.Unsent, f.drop = true, true
	case bytes.EqualFold(name, []byte("Host")):
		h.hosts++
		h.host = f.value
	}
	h.fields = append(h.fields, f)
	return nil
}

func (h *Head) contentLength(v []byte, s span) error {
	// One decimal number per field, as net/http reads it (no lists);
	// repeated fields are accepted when they are the same text ("5" and
	// "05" are not: net/http refuses them).
	if len(v) == 0 || len(v) > 18 || v[0] == '+' {
		return fmt.Errorf("%w: bad Content-Length", ErrMalformed)
	}
	n, err := strconv.ParseUint(string(v), 10, 63)
	if err != nil {
		return fmt.Errorf("%w: bad Content-Length", ErrMalformed)
	}
	if h.ContentLength >= 0 && !bytes.Equal(v, h.Raw[h.cl.a:h.cl.b]) {
		return fmt.Errorf("%w: conflicting Content-Length", ErrMalformed)
	}
	h.ContentLength, h.cl = int64(n), s
	return nil
}

// transferEncoding records a Transfer-Encoding field. Like net/http, only
// one field whose value is exactly "chunked" is chunked framing; any other
// coding, list, empty value or repeat is OtherTE (a request is then not
// forwardable, a response is read until the connection closes).
func (h *Head) transferEncoding(v []byte) {
	if !h.Chunked && !h.OtherTE && bytes.EqualFold(bytes.Trim(v, " \t"), []byte("chunked")) {
		h.Chunked = true
		return
	}
	h.Chunked = false
	h.OtherTE = true
}

// tokens calls fn with each comma-separated element of v, trimmed.
func tokens(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		t = bytes.Trim(t, " \t")
		if len(t) > 0 {
			fn(t)
		}
	}
}

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken[T ~string | ~[]byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if c := b[i]; c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// hostChar are the bytes of a Host field value (RFC 9110 7.2): uri-host
// (RFC 3986 3.2.2: unreserved, pct-encoded, sub-delims, IP-literal
// brackets) and ":" port. net/http answers a request with another 400.
var hostChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~%!$&'()*+,;=:[]" {
		t[c] = true
	}
	return t
}()

// validHost reports whether a Host field value has only hostChar bytes.
func validHost[T ~string | ~[]byte](v T) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c >= 0x80 || !hostChar[c] {
			return false
		}
	}
	return true
}

// Forwardable tells whether a request head is one the fast path forwards:
// HTTP/1.1, origin-form or asterisk target, one valid Host, framed by
// Content-Length or chunked (not both), and no Upgrade, Expect, CONNECT or
// hop-by-hop fields named by Connection.
func (h *Head) Forwardable() bool {
	if h.Minor != 1 || h.hosts != 1 || h.Upgrade || h.Expect || h.ConnTokens || h.OtherTE {
		return false
	}
	if h.Chunked && h.ContentLength >= 0 {
		return false
	}
	t := h.Raw[h.target.a:h.target.b]
	if t[0] != '/' && !(len(t) == 1 && t[0] == '*') {
		return false
	}
	if !validTarget(t) || !validHost(h.Raw[h.host.a:h.host.b]) {
		return false
	}
	return string(h.Raw[h.method.a:h.method.b]) != "CONNECT"
}

// validTarget reports whether an origin-form target has only printable
// ASCII and well-formed percent escapes; net/http answers the others 400.
func validTarget(t []byte) bool {
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c <= ' ' || c >= 0x7f:
			return false
		case c == '%':
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Body framing of a message.
type bodyMode int

const (
	bodyNone bodyMode = iota
	bodyFixed
	bodyChunked
	bodyUntilClose
)

func (h *Head) requestBody() bodyMode {
	switch {
	case h.Chunked:
		return bodyChunked
	case h.ContentLength > 0:
		return bodyFixed
	}
	return bodyNone
}

// responseBody is the framing of a response to a request (RFC 9112 6.3).
func (h *Head) responseBody(head bool) bodyMode {
	switch {
	case head || h.Status < 200 || h.Status == 204 || h.Status == 304:
		return bodyNone
	case h.Minor == 0 && h.ContentLength < 0:
		// HTTP/1.0 has no transfer codings (net/http ignores the field too).
		return bodyUntilClose
	case h.Minor == 0 && h.ContentLength == 0:
		return bodyNone
	case h.Minor == 0:
		return bodyFixed
	case h.Chunked:
		return bodyChunked
	case h.OtherTE:
		return bodyUntilClose
	case h.ContentLength == 0:
		return bodyNone
	case h.ContentLength > 0:
		return bodyFixed
	}
	return bodyUntilClose
}

// writeFields writes the kept fields, the added ones and the blank line.
func (h *Head) writeFields(w *bufio.Writer, closing bool) {
	for _, f := range h.fields {
		if f.drop {
			continue
		}
		if len(h.dropTrailers) > 0 && h.isTrailerField(f) {
			writeTrailerField(w, h.Raw[f.name.a:f.name.b], h.Raw[f.value.a:f.value.b], h.dropTrailers)
			continue
		}
		w.Write(h.Raw[f.name.a:f.name.b])
		w.WriteString(": ")
		w.Write(h.Raw[f.value.a:f.value.b])
		w.WriteString("\r\n")
	}
	for i := 0; i+1 < len(h.add); i += 2 {
		w.WriteString(h.add[i])
		w.WriteString(": ")
		w.WriteString(h.add[i+1])
		w.WriteString("\r\n")
	}
	if closing {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
}

// writeRequest writes the head as an HTTP/1.1 request.
func (h *Head) writeRequest(w *bufio.Writer) {
	w.Write(h.Raw[h.method.a:h.method.b])
	w.WriteByte(' ')
	w.Write(h.Raw[h.target.a:h.target.b])
	w.WriteString(" HTTP/1.1\r\n")
	h.writeFields(w, false)
}

// writeResponse writes the head as an HTTP/1.1 response.
func (h *Head) writeResponse(w *bufio.Writer, closing bool) {
	w.WriteString("HTTP/1.1 ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(h.Status), 10))
	w.WriteByte(' ')
	w.Write(h.Raw[h.reason.a:h.reason.b])
	w.WriteString("\r\n")
	h.writeFields(w, closing)
}

// protoName is "HTTP/1.x" for minor version x, without allocating for 0 and 1.
func protoName(minor int) string {
	switch minor {
	case 0:
		return "HTTP/1.0"
	case 1:
		return "HTTP/1.1"
	}
	return "HTTP/1." + strconv.Itoa(minor)
}

// statusLines holds "code reason" for the standard reasons (e.g. "200 OK").
var statusLines = func() map[int]string {
	m := map[int]string{}
	for code := 100; code < 600; code++ {
		if t := http.StatusText(code); t != "" {
			m[code] = strconv.Itoa(code) + " " + t
		}
	}
	return m
}()

// statusText is the response's status code and reason phrase joined by a
// space, for http.Response.Status; a standard pair does not allocate.
func (h *Head) statusText() string {
	reason := h.Raw[h.reason.a:h.reason.b]
	if line, ok := statusLines[h.Status]; ok && len(line) == 4+len(reason) && line[4:] == string(reason) {
		return line
	}
	return strconv.Itoa(h.Status) + " " + string(reason)
}
