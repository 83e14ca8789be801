package h2

import "sync"

// rbufs lend streams the first chunk their received DATA waits in: most
// bodies are small and read soon after they arrive.
var rbufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// frameChunks lend the chunks after the first, a frame's payload each.
var frameChunks = sync.Pool{New: func() any { b := make([]byte, 0, maxFrame); return &b }}

// recvBuf is a stream's received DATA not read yet: a queue of pooled
// chunks. It holds about what is unread, which the stream window bounds,
// however long the body and however far behind its reader, and each chunk
// goes back to its pool once read. (One growing slice kept what had been
// read too, as long as the reader never quite caught up: a 64 MiB body read
// slowly cost 319 MiB of allocations.) The zero value is empty.
type recvBuf struct {
	chunks []*[]byte  // chunks[0] is read from off; each chunk's length is what was written to it
	first  [1]*[]byte // chunks' backing array while it holds one chunk: a small body allocates no slice
	off    int
	n      int // unread bytes
}

// write appends p.
func (b *recvBuf) write(p []byte) {
	for len(p) > 0 {
		var last *[]byte
		if k := len(b.chunks); k > 0 {
			last = b.chunks[k-1]
		}
		if last == nil || len(*last) == cap(*last) {
			if b.chunks == nil {
				b.chunks = b.first[:0]
				last = rbufs.Get().(*[]byte)
			} else {
				last = frameChunks.Get().(*[]byte)
			}
			b.chunks = append(b.chunks, last)
		}
		n := copy((*last)[len(*last):cap(*last)], p)
		*last = (*last)[:len(*last)+n]
		p = p[n:]
		b.n += n
	}
}

// read moves up to len(p) unread bytes into p and returns how many.
func (b *recvBuf) read(p []byte) int {
	n := 0
	for n < len(p) && b.n > 0 {
		c := *b.chunks[0]
		k := copy(p[n:], c[b.off:])
		n += k
		b.off += k
		b.n -= k
		if b.off < len(c) {
			continue
		}
		b.off = 0
		if len(b.chunks) == 1 {
			*b.chunks[0] = c[:0] // the writer's chunk too: reuse it
			continue
		}
		putChunk(b.chunks[0])
		copy(b.chunks, b.chunks[1:])
		b.chunks[len(b.chunks)-1] = nil
		b.chunks = b.chunks[:len(b.chunks)-1]
	}
	return n
}

// drop forgets what is unread and returns every chunk to its pool.
func (b *recvBuf) drop() {
	for i, c := range b.chunks {
		putChunk(c)
		b.chunks[i] = nil
	}
	b.chunks, b.off, b.n = nil, 0, 0
}

func putChunk(c *[]byte) {
	*c = (*c)[:0]
	if cap(*c) == maxFrame {
		frameChunks.Put(c)
	} else {
		rbufs.Put(c)
	}
}
