package h2

import (
	"io"
	"net/http"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// BufferedBody is an optional capability of a body: it can tell whether a
// Read would block. The bodies of this package's streams have it, and a
// wrapper passes it through. A sender holds its frames unflushed while the
// next Read will not block, so HEADERS, DATA and trailers that are all
// there already leave in one write.
type BufferedBody interface {
	WouldBlock() bool
}

// WouldBlock implements BufferedBody.
func (b *reqBody) WouldBlock() bool { return b.st.wouldBlock() }

// WouldBlock implements BufferedBody.
func (b *respBody) WouldBlock() bool { return b.st.wouldBlock() }

func (s *stream) wouldBlock() bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.rq.n == 0 && s.rerr == nil
}

// sender writes one side of a stream, holding wmu across frames until a
// flush is due.
type sender struct {
	c      *conn
	s      *stream
	locked bool
	held   int // bytes written under the current hold of wmu
}

// maxHeld bounds what one sender writes before it lets the connection's
// other streams (and its control frames) have a turn.
const maxHeld = 64 << 10

func (w *sender) lock() {
	if !w.locked {
		w.c.lock()
		w.locked = true
	}
}

// flush releases wmu, which flushes.
func (w *sender) flush() {
	if w.locked {
		w.c.unlock()
		w.locked = false
		w.held = 0
	}
}

func (w *sender) headers(end bool, fields func(enc func(name, value string))) error {
	w.c.mu.Lock()
	reset := w.s.reset
	w.c.mu.Unlock()
	if reset {
		return errReset // the peer is done with the stream: nothing more is written on it
	}
	w.lock()
	return w.c.writeHeaders(w.s.id, end, fields)
}

// data writes p as DATA; without send window at hand it flushes and waits.
func (w *sender) data(p []byte, end bool) error {
	if len(p) == 0 && !end {
		return nil
	}
	if len(p) > 0 && !w.c.tryReserve(w.s, len(p)) {
		w.flush()
		return w.c.writeData(w.s, p, end)
	}
	w.lock()
	err := w.c.dataLocked(w.s, p, end)
	if w.held += len(p); w.held >= maxHeld {
		w.flush()
	}
	return err
}

// copyBody sends body: DATA, then trailer()'s fields or END_STREAM, and
// flushes before every Read that may block. The first chunk may have been
// read already (have, with n bytes in buf and rerr). With untilBlock it
// returns done=false, flushed, instead of making a Read that may block.
// On return with done or an error, wmu is released.
func (w *sender) copyBody(body io.Reader, buf []byte, have bool, n int, rerr error, trailer func() http.Header, untilBlock bool) (done bool, err error) {
	defer func() {
		if done || err != nil {
			w.flush()
		}
	}()
	for {
		if !have {
			if netx.MayBlock(body) {
				w.flush()
				if untilBlock {
					return false, nil
				}
			}
			n, rerr = body.Read(buf)
		}
		have = false
		if rerr != nil && rerr != io.EOF {
			return false, rerr
		}
		var tr http.Header
		if rerr == io.EOF {
			if tr = trailer(); !hasValues(tr) {
				tr = nil
			}
		}
		if err := w.data(buf[:n], rerr == io.EOF && tr == nil); err != nil {
			return false, err
		}
		if rerr == io.EOF {
			if tr != nil {
				if err := w.headers(true, func(enc func(string, string)) { encodeHeader(tr, enc) }); err != nil {
					return false, err
				}
			}
			return true, nil
		}
	}
}
