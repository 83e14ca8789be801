package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// heldUpstream is an HTTP/1.1 server that reads each request head and
// then holds the connection without answering, reading what else comes
// (a body sent after its head), reporting on ended when the proxy closes
// it (or after 10 s).
func heldUpstream(t *testing.T) (addr string, arrived chan string, ended chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	arrived, ended = make(chan string, 4), make(chan error, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 4096)
				n, _ := c.Read(buf)
				arrived <- strings.SplitN(string(buf[:n]), "\r\n", 2)[0]
				var err error
				for err == nil {
					_, err = c.Read(buf)
				}
				ended <- err
			}()
		}
	}()
	return l.Addr().String(), arrived, ended
}

// TestHangupAbortsUpstream: a client that closes its connection while the
// upstream works on its request (forwarded as it is, or through a round
// tripper) has the request aborted upstream: the pooled connection closes,
// the round trip's context is cancelled with errClientGone.
func TestHangupAbortsUpstream(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  string
	}{
		{"no body", "GET /held HTTP/1.1\r\nHost: w\r\n\r\n"},
		{"small body", "POST /held HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked body", "POST /held HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	} {
		t.Run("pool, "+tc.name, func(t *testing.T) {
			addr, arrived, ended := heldUpstream(t)
			obs := &recObs{}
			f := startFast(t, &testRouter{pool: poolTo(addr), obs: obs})
			c := hangUpAfter(t, f.addr, tc.req, arrived)
			defer c.Close()
			select {
			case err := <-ended:
				if !errors.Is(err, io.EOF) {
					t.Errorf("upstream connection ended with %v, want EOF (closed by the proxy)", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream connection outlived the client's by 5 s")
			}
			if _, errs := obs.done(1); len(errs) != 1 || errs[0] == nil {
				t.Errorf("observer: %v, want the exchange failed", errs)
			}
		})
		t.Run("round trip, "+tc.name, func(t *testing.T) {
			cause := make(chan error, 1)
			arrived := make(chan string, 1)
			rt := func(r *http.Request) (*http.Response, error) {
				_, _ = io.Copy(io.Discard, r.Body)
				arrived <- r.Method + " " + r.URL.Path + " HTTP/1.1"
				<-r.Context().Done()
				cause <- context.Cause(r.Context())
				return nil, r.Context().Err()
			}
			f := startFast(t, &testRouter{rt: rt})
			c := hangUpAfter(t, f.addr, tc.req, arrived)
			defer c.Close()
			select {
			case err := <-cause:
				if !errors.Is(err, errClientGone) {
					t.Errorf("round trip cancelled by %v, want errClientGone", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the round trip outlived the client by 5 s")
			}
		})
	}
}

// hangUpAfter sends req to addr, waits for it upstream (arrived), and
// closes the connection.
func hangUpAfter(t *testing.T, addr, req string, arrived chan string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	want := strings.SplitN(req, "\r\n", 2)[0]
	select {
	case got := <-arrived:
		if got != want {
			t.Fatalf("upstream got %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not arrive upstream")
	}
	_ = c.Close()
	return c
}

// TestHangupWatchKeepsPipelinedRequest: bytes of a next request that come
// while the watch reads the client connection (after watchDelay) are the
// start of that request, not a hang-up.
func TestHangupWatchKeepsPipelinedRequest(t *testing.T) {
	release := make(chan struct{})
	rt := func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/slow" {
			<-release
		}
		b := r.Method + " " + r.URL.Path
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: int64(len(b)),
			Body: io.NopCloser(strings.NewReader(b))}, nil
	}
	f := startFast(t, &testRouter{rt: rt})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: w\r\n\r\n")
	time.Sleep(3 * watchDelay) // the watch is reading
	_, _ = io.WriteString(c, "GET /next HTTP/1.1\r\nHost: w\r\n\r\n")
	time.Sleep(watchDelay)
	close(release)
	br := bufio.NewReader(c)
	for _, want := range []string{"GET /slow", "GET /next"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer for %s: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("answer %d %q, want 200 %q", resp.StatusCode, b, want)
		}
	}
}

// TestHangupWatchAcrossExchanges runs exchanges that end about when the
// watch's timer fires, one after another on a connection: a run of the
// timer that starts as one exchange ends must not disturb the next (it
// once found the next one's watch running, and closed its channel twice).
func TestHangupWatchAcrossExchanges(t *testing.T) {
	var n atomic.Int32
	rt := func(r *http.Request) (*http.Response, error) {
		// From just before watchDelay to just after it.
		time.Sleep(watchDelay - 5*time.Millisecond + time.Duration(n.Add(1)%10)*time.Millisecond)
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: 2, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}
	f := startFast(t, &testRouter{rt: rt})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for i := range 40 {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: w\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("exchange %d: %d %q", i, resp.StatusCode, b)
		}
	}
}
