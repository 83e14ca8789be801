package h2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// hblock is a decoded header block: a HEADERS frame and the CONTINUATION
// frames that complete it. A connection's reader decodes every block into
// the same hblock with one HPACK decoder, so Fields is valid only until the
// next block is read; the ends copy what they keep (headerOf, trailerOf).
// x/net's MetaHeadersFrame allocated the frame, its growing field slice
// and the decoder's callback for every block.
type hblock struct {
	StreamID  uint32
	Fields    []hpack.HeaderField // pseudo-headers first
	Truncated bool                // fields beyond maxHeaderList were dropped
	ended     bool                // END_STREAM

	dec     *hpack.Decoder
	left    uint32 // header list bytes still accepted (RFC 9113 6.5.2)
	regular bool   // a regular field was decoded
	bad     error  // the first field RFC 9113 8.2 and 8.3 forbid
}

// errSelfDependency is the stream error of a PRIORITY frame, or HEADERS
// with a priority, naming its own stream as its dependency (RFC 9113
// 5.3.1).
var errSelfDependency = errors.New("h2: stream depends on itself")

func newHBlock() *hblock {
	b := &hblock{}
	b.dec = hpack.NewDecoder(4096, b.emit)
	b.dec.SetMaxStringLength(maxHeaderList)
	return b
}

// StreamEnded reports END_STREAM on the HEADERS frame.
func (b *hblock) StreamEnded() bool { return b.ended }

// PseudoValue returns the value of the pseudo-header ":"+name, or "".
func (b *hblock) PseudoValue(name string) string {
	for _, f := range b.Fields {
		if !strings.HasPrefix(f.Name, ":") {
			break
		}
		if f.Name[1:] == name {
			return f.Value
		}
	}
	return ""
}

// emit takes a field as the decoder produces it.
func (b *hblock) emit(f hpack.HeaderField) {
	if b.bad != nil {
		return
	}
	switch {
	case !httpguts.ValidHeaderFieldValue(f.Value):
		b.bad = fmt.Errorf("h2: invalid value of header field %q", f.Name) // the value may be a secret
	case strings.HasPrefix(f.Name, ":"):
		if b.regular {
			b.bad = fmt.Errorf("h2: pseudo-header %q after a regular field", f.Name)
		}
	case !validFieldName(f.Name):
		b.bad = fmt.Errorf("h2: invalid header field name %q", f.Name)
	default:
		b.regular = true
	}
	if b.bad != nil {
		b.dec.SetEmitEnabled(false)
		return
	}
	if n := f.Size(); n <= b.left {
		b.left -= n
		b.Fields = append(b.Fields, f)
		return
	}
	// Past the limit: the rest of the block is still decoded, to keep the
	// HPACK table in step with the peer's, but nothing more is kept.
	b.Truncated, b.left = true, 0
	b.dec.SetEmitEnabled(false)
}

// validFieldName: a token in lowercase (RFC 9113 8.2.1).
func validFieldName(name string) bool {
	if !httpguts.ValidHeaderFieldName(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			return false
		}
	}
	return true
}

// checkPseudo checks the block's pseudo-headers: each known, at most once,
// and those of a request or those of a response, not both (RFC 9113 8.3).
func (b *hblock) checkPseudo() error {
	var request, response bool
	for i, f := range b.Fields {
		if !strings.HasPrefix(f.Name, ":") {
			break
		}
		switch f.Name {
		case ":method", ":scheme", ":authority", ":path", ":protocol":
			request = true
		case ":status":
			response = true
		default:
			return fmt.Errorf("h2: unknown pseudo-header %q", f.Name)
		}
		for _, g := range b.Fields[:i] {
			if g.Name == f.Name {
				return fmt.Errorf("h2: duplicate pseudo-header %q", f.Name)
			}
		}
	}
	if request && response {
		return errors.New("h2: request and response pseudo-headers in one block")
	}
	return nil
}

// readBlock decodes the header block h starts, reading the CONTINUATION
// frames that follow it (the framer lets no other frame come between). A
// block that does not decode, or whose CONTINUATION frames go on past the
// limit or after a forbidden field, is a connection error; a forbidden
// field in a block otherwise read whole is an error of its stream, and so
// is a priority naming the block's own stream as its dependency (RFC 9113
// 5.3.1), found once the block is decoded, so that HPACK stays in step.
func (c *conn) readBlock(h headers) (*hblock, error) {
	b := c.hb
	clear(b.Fields)
	b.Fields = b.Fields[:0]
	b.StreamID, b.ended = h.streamID, h.ended
	b.Truncated, b.regular, b.bad = false, false, nil
	b.left = maxHeaderList
	b.dec.SetEmitEnabled(true)
	frag, end := h.frag, h.endHeaders
	for first := true; ; first = false {
		if !first && (b.bad != nil || uint64(len(frag)) > 2*uint64(b.left)) {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := b.dec.Write(frag); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if end {
			break
		}
		f, err := c.rfr.ReadFrame()
		if err != nil {
			return nil, err
		}
		cf, ok := f.(*http2.ContinuationFrame)
		if !ok {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		frag, end = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := b.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if b.bad == nil {
		b.bad = b.checkPseudo()
	}
	if b.bad != nil {
		return nil, http2.StreamError{StreamID: b.StreamID, Code: http2.ErrCodeProtocol, Cause: b.bad}
	}
	if h.hasPriority && h.dep == h.streamID {
		return nil, http2.StreamError{StreamID: b.StreamID, Code: http2.ErrCodeProtocol, Cause: errSelfDependency}
	}
	return b, nil
}

// headers is what readBlock needs of a HEADERS frame.
type headers struct {
	streamID    uint32
	ended       bool // END_STREAM
	endHeaders  bool // END_HEADERS: no CONTINUATION follows
	hasPriority bool
	dep         uint32 // the priority's stream dependency
	frag        []byte // the header block fragment
}

// headersOf is what readBlock needs of f.
func headersOf(f *http2.HeadersFrame) headers {
	return headers{streamID: f.StreamID, ended: f.StreamEnded(), endHeaders: f.HeadersEnded(),
		hasPriority: f.HasPriority(), dep: f.Priority.StreamDep, frag: f.HeaderBlockFragment()}
}

// peekHeaders parses the payload of the HEADERS frame fh heads in c's read
// buffer, without reading it: its fragment is valid until the next read,
// and the caller discards the payload once the block is decoded. It
// declines (false) a frame that the framer had better read: one whose
// block goes on in CONTINUATION frames (read from the same buffer), one
// larger than the buffer, and one that is not well-formed, for the
// framer's errors.
func (c *conn) peekHeaders(fh http2.FrameHeader) (headers, bool) {
	n := int(fh.Length)
	if fh.StreamID == 0 || !fh.Flags.Has(http2.FlagHeadersEndHeaders) || n > c.br.Size() {
		return headers{}, false
	}
	p, err := c.br.Peek(n)
	if err != nil {
		return headers{}, false // the framer's read fails the same way
	}
	h := headers{streamID: fh.StreamID, ended: fh.Flags.Has(http2.FlagHeadersEndStream), endHeaders: true}
	pad := 0
	if fh.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			return headers{}, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if fh.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return headers{}, false
		}
		h.hasPriority = true
		h.dep = binary.BigEndian.Uint32(p) & 0x7fffffff
		p = p[5:]
	}
	if len(p) < pad {
		return headers{}, false
	}
	h.frag = p[:len(p)-pad]
	return h, true
}
