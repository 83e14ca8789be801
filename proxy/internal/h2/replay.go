package h2

import (
	"errors"
	"io"
	"sync"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// replayLimit bounds what of a streaming request body (of unknown length,
// as gRPC's) the client keeps until the response head arrives, to send it
// again when the server refuses the stream unprocessed. A server of this
// package widens a stream's window past the protocol's initial 65,535 bytes
// only once its handler reads the body (stream.narrow), so a refused stream
// has cost at most that much plus the one buffer the sender had read and
// not sent yet; the limit leaves room for both. Past it the body is not
// kept, and a refusal fails the request as it did before.
const replayLimit = 2*initialWindow + maxFrame

// errReplaced is the error of a request body's reader after the body went
// to another attempt (replayBody.rewind).
var errReplaced = errors.New("h2: request body handed to another attempt")

// replayBody keeps what is read of a request body, up to replayLimit, until
// commit, so that a refused attempt can hand the body to the next one:
// rewind gives a reader that reads the kept bytes again, then the rest.
// Only the newest reader reads; a reader of an earlier attempt (its
// sender goroutine may still be in a Read) gets errReplaced, and the bytes
// of a Read it had in flight are kept for the new one.
type replayBody struct {
	body io.ReadCloser

	mu      sync.Mutex
	cond    sync.Cond // a Read of body ended
	kept    []byte    // read from body; the live reader is at off
	keptp   *[]byte   // kept's pooled backing array (rbufs), while kept has not outgrown it
	off     int
	keeping bool  // still keeping: not committed, not past the limit
	reading bool  // a Read of body is in flight
	err     error // body's Read error, io.EOF included
	closed  bool  // body was closed
	closing bool  // the live reader was closed while keeping: body is closed at commit
	gen     int   // the live reader's generation

	first replayReader
}

func newReplayBody(body io.ReadCloser) *replayBody {
	b := &replayBody{body: body, keeping: true}
	b.cond.L = &b.mu
	b.first.b = b
	return b
}

// rewind hands the body to a new attempt, when all that was read of it is
// kept, and returns its reader.
func (b *replayBody) rewind() (io.ReadCloser, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.keeping || b.closed {
		return nil, false
	}
	b.gen++
	b.off, b.closing = 0, false
	return &replayReader{b: b, gen: b.gen}, true
}

// commit stops keeping: the request was taken, or failed, or goes to
// another client with the live reader. What the live reader has not read
// of the kept bytes stays until it has. A Close of the live reader while
// keeping takes effect now.
func (b *replayBody) commit() {
	b.mu.Lock()
	b.keeping = false
	b.drop()
	closing := b.closing && !b.closed
	b.closing = false
	b.closed = b.closed || closing
	b.mu.Unlock()
	if closing {
		_ = b.body.Close()
	}
}

// keep appends p to kept; b.mu is held. Most bodies (gRPC's messages) are
// small: kept starts in a pooled 4 KiB array.
func (b *replayBody) keep(p []byte) {
	if b.kept == nil && len(p) <= 4<<10 {
		b.keptp = rbufs.Get().(*[]byte)
		b.kept = (*b.keptp)[:0]
	}
	b.kept = append(b.kept, p...)
}

// drop lets the kept bytes go once they are of no more use; b.mu is held.
// No reader reads them any more: the live one has, the others never do.
func (b *replayBody) drop() {
	if b.keeping || b.off < len(b.kept) {
		return
	}
	if b.keptp != nil && cap(b.kept) == cap(*b.keptp) {
		*b.keptp = (*b.keptp)[:0]
		rbufs.Put(b.keptp)
	}
	b.kept, b.keptp, b.off = nil, nil, 0
}

// replayReader is one attempt's view of a replayBody.
type replayReader struct {
	b   *replayBody
	gen int
}

func (r *replayReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	for {
		if r.gen != b.gen {
			b.mu.Unlock()
			return 0, errReplaced
		}
		if b.off < len(b.kept) {
			n := copy(p, b.kept[b.off:])
			b.off += n
			b.drop()
			b.mu.Unlock()
			return n, nil
		}
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		if !b.reading {
			break
		}
		b.cond.Wait() // an earlier attempt's Read, whose bytes are this reader's
	}
	b.reading = true
	b.mu.Unlock()
	n, err := b.body.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	b.cond.Broadcast()
	if err != nil {
		b.err = err
	}
	if r.gen != b.gen {
		// Read for an attempt that is over: the bytes are the next one's.
		b.keep(p[:n])
		return 0, errReplaced
	}
	if b.keeping {
		if len(b.kept)+n > replayLimit {
			b.keeping = false
		} else {
			b.keep(p[:n])
			b.off += n
		}
		b.drop()
	}
	return n, err
}

// Close closes the body, unless a later attempt has it. While the body is
// kept the close waits for commit: the sender of a refused attempt closes
// its reader before RoundTrip can hand the body to the next one.
func (r *replayReader) Close() error {
	b := r.b
	b.mu.Lock()
	if r.gen != b.gen || b.closed {
		b.mu.Unlock()
		return nil
	}
	if b.keeping {
		b.closing = true
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	return b.body.Close()
}

// WouldBlock implements BufferedBody.
func (r *replayReader) WouldBlock() bool {
	b := r.b
	b.mu.Lock()
	if r.gen != b.gen || b.off < len(b.kept) || b.err != nil {
		b.mu.Unlock()
		return false
	}
	reading := b.reading
	b.mu.Unlock()
	return reading || netx.MayBlock(b.body)
}
