package h1

import (
	"bufio"
	"io"
	"sync"
	"sync/atomic"
)

// A connection holds its 16 KiB read and write buffers only during an
// exchange; between exchanges they go back to these pools, so that idle
// keep-alive connections (client connections waiting for their next
// request, pooled upstream ones) cost little memory. A client connection
// waits for its next request reading into a small buffer of its own
// (idleReadSize, as net/http's whole read buffer), then takes the large
// ones.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
)

// lent counts the buffer pairs in use (for tests).
var lent atomic.Int64

// idleReadSize is the buffer a client connection waits for its next
// request with: most request heads, with a small body, fit in it.
const idleReadSize = 4 << 10

func getReader(r io.Reader) *bufio.Reader {
	lent.Add(1)
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

// putBuffers returns br and bw to their pools unless they still hold bytes
// (a pipelined request, say); it reports whether it did. Neither may be
// used after it returned true.
func putBuffers(br *bufio.Reader, bw *bufio.Writer) bool {
	if br.Buffered() > 0 || bw.Buffered() > 0 {
		return false
	}
	lent.Add(-1)
	br.Reset(nil)
	bw.Reset(nil)
	readers.Put(br)
	writers.Put(bw)
	return true
}
