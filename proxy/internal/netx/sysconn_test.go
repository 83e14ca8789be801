package netx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sysPair returns a connected loopback pair whose server end is a SysConn.
func sysPair(t *testing.T) (peer net.Conn, s *SysConn) {
	t.Helper()
	client, server := pair(t)
	sc, ok := NewSysConn(server).(*SysConn)
	if !ok {
		t.Fatalf("NewSysConn(%T) did not wrap a TCP connection", server)
	}
	return client, sc
}

func TestNewSysConnLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := NewSysConn(a); got != a {
		t.Fatalf("NewSysConn(net.Pipe end) = %T, want it unchanged", got)
	}
}

func TestSysConnMovesBytesBothWays(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"one byte", 1},
		{"1 KiB request", 1 << 10},
		// Larger than the socket buffers: writes meet EAGAIN and wait for the
		// poller, reads return in pieces.
		{"16 MiB", 16 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer, s := sysPair(t)
			want := bytes.Repeat([]byte("conduit!"), tt.size/8+1)[:tt.size]

			// SysConn writes while the peer reads slowly at first.
			got := make(chan []byte, 1)
			go func() {
				time.Sleep(20 * time.Millisecond)
				b, _ := io.ReadAll(io.LimitReader(peer, int64(tt.size)))
				got <- b
			}()
			n, err := s.Write(want)
			if err != nil || n != len(want) {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
			}
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("peer read %d bytes, not what was written (%d)", len(b), len(want))
			}

			// The peer writes; SysConn reads it all.
			go func() { _, _ = peer.Write(want) }()
			back := make([]byte, len(want))
			if _, err := io.ReadFull(s, back); err != nil {
				t.Fatalf("ReadFull: %v", err)
			}
			if !bytes.Equal(back, want) {
				t.Fatal("read back different bytes")
			}
		})
	}
}

func TestSysConnErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(peer net.Conn, s *SysConn)
		op    func(s *SysConn) (int, error)
		check func(error) bool
		want  string
	}{
		{
			name:  "peer closed: EOF",
			setup: func(peer net.Conn, _ *SysConn) { peer.Close() },
			op:    func(s *SysConn) (int, error) { return s.Read(make([]byte, 10)) },
			check: func(err error) bool { return err == io.EOF },
			want:  "io.EOF",
		},
		{
			name:  "read deadline passes",
			setup: func(_ net.Conn, s *SysConn) { _ = s.SetReadDeadline(time.Now().Add(30 * time.Millisecond)) },
			op:    func(s *SysConn) (int, error) { return s.Read(make([]byte, 10)) },
			check: func(err error) bool {
				var ne net.Error
				return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
			},
			want: "a timeout wrapping os.ErrDeadlineExceeded",
		},
		{
			name:  "closed locally",
			setup: func(_ net.Conn, s *SysConn) { s.Close() },
			op:    func(s *SysConn) (int, error) { return s.Read(make([]byte, 10)) },
			check: func(err error) bool { return errors.Is(err, net.ErrClosed) },
			want:  "net.ErrClosed",
		},
		{
			name: "write to a reset peer",
			setup: func(peer net.Conn, _ *SysConn) {
				_ = peer.(*net.TCPConn).SetLinger(0) // close sends RST
				peer.Close()
				time.Sleep(20 * time.Millisecond)
			},
			op: func(s *SysConn) (int, error) {
				var err error
				for i := 0; i < 100 && err == nil; i++ { // the first write may land before the RST is seen
					_, err = s.Write(make([]byte, 1024))
				}
				return 0, err
			},
			check: func(err error) bool {
				var op *net.OpError
				return errors.As(err, &op) && op.Op == "write" &&
					(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET))
			},
			want: "a write *net.OpError with EPIPE or ECONNRESET",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer, s := sysPair(t)
			tt.setup(peer, s)
			done := make(chan error, 1)
			go func() { _, err := tt.op(s); done <- err }()
			select {
			case err := <-done:
				if !tt.check(err) {
					t.Fatalf("error %v (%T), want %s", err, err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the operation did not return")
			}
		})
	}
}

// Concurrent writers each write whole messages: nothing is interleaved.
func TestSysConnConcurrentWrites(t *testing.T) {
	peer, s := sysPair(t)
	const writers, msgs, size = 4, 200, 4096
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(b byte) {
			defer wg.Done()
			msg := bytes.Repeat([]byte{b}, size)
			for i := 0; i < msgs; i++ {
				if _, err := s.Write(msg); err != nil {
					t.Error(err)
					return
				}
			}
		}(byte('a' + w))
	}
	go func() { wg.Wait(); _ = s.CloseWrite() }()
	buf := make([]byte, size)
	for i := 0; i < writers*msgs; i++ {
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if bytes.Count(buf, buf[:1]) != size {
			t.Fatalf("message %d mixes writers' bytes", i)
		}
	}
}

func TestSysConnReadWriteDoNotAllocate(t *testing.T) {
	peer, s := sysPair(t)
	buf := make([]byte, 512)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := s.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round trip, want 0", allocs)
	}
}

func TestDialerWrapsTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	var d Dialer
	for name, dial := range map[string]func(addr string) (net.Conn, error){
		"DialContext": func(addr string) (net.Conn, error) { return d.DialContext(context.Background(), "tcp", addr) },
		"Dial":        func(addr string) (net.Conn, error) { return d.Dial("tcp", addr) },
	} {
		t.Run(name, func(t *testing.T) {
			c, err := dial(l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, ok := c.(*SysConn); !ok {
				t.Fatalf("%s returned %T, want *SysConn", name, c)
			}
			if _, err := io.WriteString(c, "ping"); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4)
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
				t.Fatalf("echo = %q, %v", got, err)
			}
			if _, err := dial("127.0.0.1:1"); err == nil {
				t.Fatal("dialing a closed port succeeded")
			}
		})
	}
}

// readPooled waits for bytes without a buffer, takes a pooled 64 KiB one
// for the read, and reports the end of the stream and errors as Read does.
func TestSysConnReadPooled(t *testing.T) {
	peer, s := sysPair(t)
	type result struct {
		bp  *[]byte
		n   int
		err error
	}
	read := func() <-chan result {
		ch := make(chan result, 1)
		go func() {
			bp, n, err := s.readPooled()
			ch <- result{bp, n, err}
		}()
		return ch
	}
	lent := bigLent.Load()
	ch := read()
	time.Sleep(50 * time.Millisecond) // the read is waiting
	if n := bigLent.Load() - lent; n != 0 {
		t.Fatalf("a waiting read holds %d pooled buffers, want none", n)
	}
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil || r.bp == nil || string((*r.bp)[:r.n]) != "hello" || len(*r.bp) != pipeBufSize {
		t.Fatalf("readPooled = %d bytes, %v", r.n, r.err)
	}
	if n := bigLent.Load() - lent; n != 1 {
		t.Errorf("%d buffers lent, want the one returned", n)
	}
	pipeBufs.Put(r.bp)
	bigLent.Add(-1)

	// A deadline fails the read as Read's would, without a buffer.
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	r = <-read()
	var op *net.OpError
	if r.bp != nil || !errors.Is(r.err, os.ErrDeadlineExceeded) || !errors.As(r.err, &op) || op.Op != "read" {
		t.Fatalf("readPooled past the deadline = %v, %v; want a read OpError for the deadline", r.bp, r.err)
	}
	_ = s.SetReadDeadline(time.Time{})

	// The peer's close is io.EOF.
	_ = peer.Close()
	r = <-read()
	if r.bp != nil || r.n != 0 || r.err != io.EOF {
		t.Fatalf("readPooled after the peer closed = %d bytes, %v; want io.EOF", r.n, r.err)
	}
	if n := bigLent.Load() - lent; n != 0 {
		t.Errorf("%d buffers still lent", n)
	}
}
