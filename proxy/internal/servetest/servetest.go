package servetest

import (
	"context"
	"net"
	"testing"
	"time"
)

// Server is a proxy as its command runs it: Serve accepts on a listener
// until it is closed, and Shutdown drains, possibly from another goroutine.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Serve serves s on a new loopback listener until the test ends, then
// closes the listener and shuts s down (2 s at most), and returns the
// listener's address.
func Serve(t testing.TB, s Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() {
		l.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return l.Addr().String()
}

// ShutdownWhileServing calls s.Shutdown while s.Serve may still be setting
// up on a loopback listener, as a SIGTERM right at start does. Nothing
// orders the two, so under -race a field that Serve sets and Shutdown reads
// without synchronization is reported. Shutdown must succeed within 1 s,
// and Serve must return once its listener is closed.
func ShutdownWhileServing(t testing.TB, s Server) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = s.Serve(l); close(done) }()
	time.Sleep(10 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	l.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return 5 s after its listener was closed")
	}
}

// TCP listens on loopback until the test ends and runs handle on each
// connection it accepts, in a goroutine of its own (handle closes it), and
// returns the address: the application or peer of a proxy under test.
func TCP(t testing.TB, handle func(net.Conn)) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l.Addr().(*net.TCPAddr)
}
