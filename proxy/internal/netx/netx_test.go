package netx

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/detect"
	"github.com/conduit-mesh/conduit/proxy/metrics"
)

func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestPeek(t *testing.T) {
	tests := []struct {
		name   string
		send   []string
		want   detect.Protocol
		maxDur time.Duration
	}{
		{"http1 in pieces", []string{"GE", "T / HTTP/1.1\r\nHost: x\r\n\r\n"}, detect.HTTP1, time.Second},
		{"h2 preface", []string{detect.H2Preface}, detect.HTTP2, time.Second},
		{"opaque bytes", []string{"\x00\x01\x02"}, detect.Opaque, time.Second},
		{"server speaks first: silence times out to opaque", nil, detect.Opaque, 400 * time.Millisecond},
		{"partial line then silence", []string{"GET /"}, detect.Opaque, 400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := pair(t)
			go func() {
				for _, s := range tt.send {
					_, _ = io.WriteString(client, s)
					time.Sleep(10 * time.Millisecond)
				}
			}()
			reg := metrics.New()
			c := Wrap(server, &Info{Stats: reg.Open(metrics.TCPKey{Direction: "inbound", Peer: "src"})})
			start := time.Now()
			got, _, err := Peek(c, 200*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if d := time.Since(start); d > tt.maxDur {
				t.Errorf("took %v", d)
			}
			// Peeked bytes are replayed.
			var all string
			for _, s := range tt.send {
				all += s
			}
			if len(all) > 0 {
				buf := make([]byte, len(all))
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != all {
					t.Errorf("replay %q, %v; want %q", buf, err, all)
				}
			}
		})
	}
}

func TestPipeSplicesAndHalfCloses(t *testing.T) {
	a1, a2 := pair(t)
	b1, b2 := pair(t)
	reg := metrics.New()
	info := &Info{Stats: reg.Open(metrics.TCPKey{Direction: "outbound", Peer: "src"})}
	wa := Wrap(a2, info)
	wa.pre = []byte("hello ")
	done := make(chan struct{})
	go func() { Pipe(wa, b1, reg.Open(metrics.TCPKey{Direction: "outbound", Peer: "dst"})); close(done) }()
	// b2 echoes and closes after EOF.
	go func() { _, _ = io.Copy(b2, b2); b2.(*net.TCPConn).CloseWrite() }()
	_, _ = io.WriteString(a1, "world")
	_ = a1.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(a1)
	if err != nil || string(got) != "hello world" {
		t.Fatalf("got %q, %v", got, err)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Pipe did not finish after both halves closed")
	}
}

func TestUnsent(t *testing.T) {
	base := fmt.Errorf("outbound: connect 10.0.0.1:80: %w", syscall.ECONNREFUSED)
	err := Unsent(base)
	if !errors.Is(err, ErrUnsent) || !errors.Is(err, syscall.ECONNREFUSED) || err.Error() != base.Error() {
		t.Fatalf("Unsent(%v) = %v: want the same message, ErrUnsent and the cause", base, err)
	}
	if wrapped := fmt.Errorf("h2: %w", err); !errors.Is(wrapped, ErrUnsent) {
		t.Fatalf("%v: the mark is lost when wrapped", wrapped)
	}
	if Unsent(nil) != nil || errors.Is(base, ErrUnsent) {
		t.Fatal("Unsent(nil) must be nil, and an unmarked error is not unsent")
	}
	if again := Unsent(err); again != err {
		t.Fatalf("Unsent twice wraps twice: %#v", again)
	}
}

// TestConnCloseWrite: a Conn half-closes the TCP connection it wraps, so the
// peer reads the end of the stream while the Conn still reads the peer.
func TestConnCloseWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := Wrap(raw, &Info{})
	defer c.Close()
	if _, err := c.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "last" {
		t.Fatalf("the peer read %q, %v; want \"last\" and the end of the stream", got, err)
	}
	if _, err := peer.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "still" {
		t.Fatalf("after CloseWrite the Conn read %q, %v", buf, err)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if err := (&Conn{Conn: p1, Info: &Info{}}).CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CloseWrite over a pipe: %v, want ErrUnsupported", err)
	}
}
