package h2

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestRecvBuf interleaves writes of frame sizes with reads of other sizes
// and checks the bytes against bytes.Buffer, the unread count, and that
// the chunks held never exceed what is unread by more than two chunks.
func TestRecvBuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var b recvBuf
		var want bytes.Buffer
		next := byte(0)
		for range 100 {
			if rng.IntN(2) == 0 {
				p := make([]byte, rng.IntN(maxFrame+1))
				for i := range p {
					p[i], next = next, next+1
				}
				b.write(p)
				want.Write(p)
			} else {
				p := make([]byte, rng.IntN(3*maxFrame))
				n := b.read(p)
				w := want.Next(len(p))
				if !bytes.Equal(p[:n], w) {
					t.Fatalf("round %d: read %d bytes that differ from the %d written", round, n, len(w))
				}
			}
			if b.n != want.Len() {
				t.Fatalf("round %d: %d unread, want %d", round, b.n, want.Len())
			}
			held := 0
			for _, c := range b.chunks {
				held += cap(*c)
			}
			if held > b.n+2*maxFrame {
				t.Fatalf("round %d: %d bytes of chunks held for %d unread", round, held, b.n)
			}
		}
		b.drop()
		if b.n != 0 || len(b.chunks) != 0 {
			t.Fatalf("round %d: drop left %d bytes in %d chunks", round, b.n, len(b.chunks))
		}
	}
}
