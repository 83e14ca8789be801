package app_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// slowTotal is what the application sends to a client that does not
	// read, or a client to an application that does not read.
	slowTotal = 48 << 20
	// slowBound is what may be sent before the reader reads: the
	// sockets' buffers of three hops (the kernel's, not the proxies')
	// and the HTTP/2 windows. A hop that buffers without bound lets the
	// sender send all of slowTotal.
	slowBound = 32 << 20
	// heapBound is how much the process's heap (both proxies, the
	// client and the application) may grow meanwhile.
	heapBound = 32 << 20
)

// TestSlowPeerBoundsMemory: a client that stops reading a response, or an
// application that does not read a request body, stops its sender once
// the hops' buffers are full, and the proxies' memory stays bounded; once
// the reader reads, everything arrives. In every relay mode, for HTTP/1.1
// and h2c clients. A proxy that read ahead without bound would let one
// slow client take its pod's memory.
func TestSlowPeerBoundsMemory(t *testing.T) {
	var sent atomic.Int64 // by the application, of a response
	release := make(chan struct{}, 1)
	chunk := make([]byte, 32<<10)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			<-release
			n, _ := io.Copy(io.Discard, r.Body)
			io.WriteString(w, strconv.FormatInt(n, 10))
			return
		}
		for sent.Load() < slowTotal && r.Context().Err() == nil {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	eachRelay(t, app, func(t *testing.T, _ relayMode, c relayClient, path string) {
		// A response its client does not read, streamed (the
		// application's length does not matter here).
		if path != "/chunked" {
			return
		}
		sent.Store(0)
		heap := heapInuse()
		resp, err := c.c.Get("http://web/download")
		if err != nil {
			t.Fatal(err)
		}
		bounded(t, &sent, heap, "the application", "the client")
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != slowTotal {
			t.Fatalf("the client read %d bytes, %v, want %d", n, err, slowTotal)
		}

		// A request body its application does not read.
		var produced atomic.Int64
		heap = heapInuse()
		done := make(chan error, 1)
		go func() {
			resp, err := c.c.Post("http://web/upload", "application/octet-stream", &countingReader{n: slowTotal, count: &produced})
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && string(b) != strconv.Itoa(slowTotal) {
					err = fmt.Errorf("the application read %s bytes, want %d", b, slowTotal)
				}
			}
			done <- err
		}()
		bounded(t, &produced, heap, "the client", "the application")
		release <- struct{}{}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestSlowPeerBoundsMemoryOpaque: the same through an opaque port: an
// application that writes to a client that does not read is stopped once
// the hops' buffers are full, and the client then gets every byte.
func TestSlowPeerBoundsMemoryOpaque(t *testing.T) {
	var sent atomic.Int64
	chunk := make([]byte, 32<<10)
	m := newMesh(t)
	client, _ := m.opaquePair(t, serveTCP(t, func(c net.Conn) {
		for sent.Load() < slowTotal {
			n, err := c.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}), "10.9.9.13:3306")
	heap := heapInuse()
	c, err := net.Dial("tcp", client.OutboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bounded(t, &sent, heap, "the application", "the client")
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if n, err := io.Copy(io.Discard, c); err != nil || n != slowTotal {
		t.Fatalf("the client read %d bytes, %v, want %d", n, err, slowTotal)
	}
}

// bounded waits until sender's count n stops growing while reader reads
// nothing, and fails if it reached slowBound, or the heap grew by more than
// heapBound over heap.
func bounded(t *testing.T, n *atomic.Int64, heap int64, sender, reader string) {
	t.Helper()
	plateau := waitPlateau(t, n)
	grown := heapInuse() - heap
	t.Logf("%s sent %d MiB before %s read, heap +%d MiB", sender, plateau>>20, reader, grown>>20)
	if plateau >= slowBound {
		t.Errorf("%s sent %d MiB to %s that read nothing", sender, plateau>>20, reader)
	}
	if grown > heapBound {
		t.Errorf("the heap grew by %d MiB while %s read nothing", grown>>20, reader)
	}
}

// waitPlateau waits until n stops growing for 300 ms (or reaches
// slowTotal), and returns it.
func waitPlateau(t *testing.T, n *atomic.Int64) int64 {
	t.Helper()
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		v := n.Load()
		if v >= slowTotal {
			return v
		}
		if v != last {
			last, since = v, time.Now()
		} else if v > 0 && time.Since(since) > 300*time.Millisecond {
			return v
		}
	}
	t.Fatalf("no plateau: %d bytes", n.Load())
	return 0
}

func heapInuse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// countingReader yields n zero bytes, counting them in count as they are
// read.
type countingReader struct {
	n     int64
	count *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	clear(p)
	r.n -= int64(len(p))
	r.count.Add(int64(len(p)))
	return len(p), nil
}
