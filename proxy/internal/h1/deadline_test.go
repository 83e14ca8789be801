package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServerHeadTimeout: a request head that is not all there gets
// HeadTimeout to arrive (not the idle timeout): the connection is closed.
func TestServerHeadTimeout(t *testing.T) {
	up := upstream(t)
	f := startFastWith(t, &testRouter{pool: poolTo(up.Listener.Addr().String())}, &Server{HeadTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, _ = io.WriteString(c, "GET /x HTTP/1.1\r\nHost: w\r\n") // no blank line yet
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v; want EOF: the proxy closes", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v, want about HeadTimeout", d)
	}
}

// TestServerIdleTimeout: a connection idle between requests is closed
// after IdleTimeout.
func TestServerIdleTimeout(t *testing.T) {
	up := upstream(t)
	f := startFastWith(t, &testRouter{pool: poolTo(up.Listener.Addr().String())}, &Server{IdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, "GET /x HTTP/1.1\r\nHost: w\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	start := time.Now()
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v; want EOF: the proxy closes", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v, want about IdleTimeout", d)
	}
}

// TestServerExchangeOutlivesIdleDeadline: an exchange that starts with
// the idle read deadline still set (its head was buffered whole) runs past
// that deadline: the hang-up watch clears it. Here the request body comes
// slowly, in a second part sent after the idle deadline has passed.
func TestServerExchangeOutlivesIdleDeadline(t *testing.T) {
	up := upstream(t)
	for name, rt := range map[string]*testRouter{
		"pool":      {pool: poolTo(up.Listener.Addr().String())},
		"roundtrip": {rt: viaTransport(up.Listener.Addr().String())},
	} {
		t.Run(name, func(t *testing.T) {
			f := startFastWith(t, rt, &Server{IdleTimeout: 400 * time.Millisecond, keepIdle: 50 * time.Millisecond})
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(c, "POST /x HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			time.Sleep(800 * time.Millisecond) // twice the idle timeout
			_, _ = io.WriteString(c, "6\r\n world\r\n0\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK || string(b) != "POST hello world" {
				t.Fatalf("%d %q %v (%s), want 200 and the echo", resp.StatusCode, b, err, resp.Header.Get("Conduit-Proxy-Error"))
			}
		})
	}
}
