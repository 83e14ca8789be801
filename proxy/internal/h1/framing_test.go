package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// scripted is an upstream that answers each request (the nth it read, from
// 1) with the raw bytes answer returns, in one write, and closes the
// connection after it when told to.
func scripted(t *testing.T, answer func(n int32, r *http.Request) (raw string, closeAfter bool)) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var requests atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, r.Body)
					raw, closeAfter := answer(requests.Add(1), r)
					if _, err := io.WriteString(c, raw); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String(), &requests
}

// TestForwardedResponseHead: a response head is forwarded as HTTP/1.1
// without the fields that are hop-by-hop or do not frame its body here.
func TestForwardedResponseHead(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "fields named by Connection",
			in:   "HTTP/1.1 200 OK\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\nX-Keep: 2\r\nContent-Length: 0\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nX-Keep: 2\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name: "upgrade offered on a plain response",
			in:   "HTTP/1.1 200 OK\r\nUpgrade: h2,h2c\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name: "Connection naming a framing field leaves it",
			in:   "HTTP/1.1 200 OK\r\nConnection: Content-Length, Transfer-Encoding\r\nContent-Length: 3\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
		},
		{
			name: "length next to chunked",
			in:   "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		},
		{
			name: "length next to another coding",
			in:   "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		},
		{
			name: "HTTP/1.0 has no transfer coding",
			in:   "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			if err := h.ReadResponse(bufio.NewReader(strings.NewReader(tt.in))); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			h.writeResponse(w, false)
			_ = w.Flush()
			if out.String() != tt.want {
				t.Errorf("forwarded head\n%q\nwant\n%q", out.String(), tt.want)
			}
			// The bridge to net/http leaves the same fields out.
			for _, k := range []string{"X-Hop", "Upgrade"} {
				if _, ok := h.httpHeader(true, nil)[k]; ok {
					t.Errorf("http.Header has %s", k)
				}
			}
		})
	}
}

// TestServerResponseFraming: the client reads a forwarded response as the
// proxy did, so that no body byte is taken for the next response.
func TestServerResponseFraming(t *testing.T) {
	const forged = "0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
	tests := []struct {
		name, raw, body string
	}{
		{
			name: "HTTP/1.0, length and chunked",
			raw:  fmt.Sprintf("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n%s", len(forged), forged),
			body: forged,
		},
		{
			name: "HTTP/1.0, empty and chunked",
			raw:  "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, _ := scripted(t, func(_ int32, r *http.Request) (string, bool) {
				if r.URL.Path == "/first" {
					return tt.raw, false
				}
				return "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond", false
			})
			f := startFast(t, &testRouter{pool: poolTo(up)})
			raw := "GET /first HTTP/1.1\r\nHost: w\r\n\r\nGET /second HTTP/1.1\r\nHost: w\r\n\r\n"
			_, bodies, _ := rawExchange(t, f.addr, raw, 2, "GET")
			if bodies[0] != tt.body || bodies[1] != "second" {
				t.Fatalf("bodies %q, want %q and \"second\"", bodies, tt.body)
			}
		})
	}
}

// extraBytes are the cases of an upstream that writes more than the
// response: what follows it looks like another response.
func extraBytes() []struct{ name, method, raw string } {
	const leak = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nleaked"
	return []struct{ name, method, raw string }{
		{"body on a HEAD response", "HEAD", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(leak), leak)},
		{"body on a 204 response", "GET", "HTTP/1.1 204 No Content\r\n\r\n" + leak},
		{"body on a 304 response", "GET", "HTTP/1.1 304 Not Modified\r\n\r\n" + leak},
		{"body longer than its length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + leak},
	}
}

func extraBytesUpstream(t *testing.T, raw string) string {
	addr, _ := scripted(t, func(_ int32, r *http.Request) (string, bool) {
		if r.URL.Path == "/bad" {
			return raw, false
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext", false
	})
	return addr
}

// TestServerNoPoolingWithExtraBytes: a connection with bytes past the
// response does not go back to the pool, where the next request, another
// client's, would read them as its response.
func TestServerNoPoolingWithExtraBytes(t *testing.T) {
	for _, tt := range extraBytes() {
		t.Run(tt.name, func(t *testing.T) {
			pool := poolTo(extraBytesUpstream(t, tt.raw))
			obs := &recObs{}
			f := startFast(t, &testRouter{pool: pool, obs: obs})
			rawExchange(t, f.addr, tt.method+" /bad HTTP/1.1\r\nHost: w\r\n\r\n", 1, tt.method)
			obs.done(1) // the upstream connection is pooled or closed
			_, bodies, _ := rawExchange(t, f.addr, "GET /next HTTP/1.1\r\nHost: w\r\n\r\n", 1, "GET")
			if bodies[0] != "next" {
				t.Fatalf("next client got %q, want \"next\"", bodies[0])
			}
		})
	}
}

func TestRoundTripNoPoolingWithExtraBytes(t *testing.T) {
	for _, tt := range extraBytes() {
		t.Run(tt.name, func(t *testing.T) {
			pool := poolTo(extraBytesUpstream(t, tt.raw))
			for _, path := range []string{"/bad", "/next"} {
				method := tt.method
				if path == "/next" {
					method = "GET"
				}
				r, _ := http.NewRequest(method, "http://w"+path, nil)
				resp, err := pool.RoundTrip(r)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if path == "/next" && string(b) != "next" {
					t.Fatalf("next request got %q, want \"next\"", b)
				}
			}
		})
	}
}

// interimThenClose answers the first request, then an interim response to
// the second before closing the connection: the second was received, and
// must not be sent again.
func interimThenClose(t *testing.T) (string, *atomic.Int32) {
	return scripted(t, func(n int32, _ *http.Request) (string, bool) {
		switch n {
		case 1:
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
		case 2:
			return "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", true
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain", false
	})
}

func TestServerNoResendAfterInterimResponse(t *testing.T) {
	up, requests := interimThenClose(t)
	obs := &recObs{}
	f := startFast(t, &testRouter{pool: poolTo(up), obs: obs})
	rawExchange(t, f.addr, "POST /1 HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\n\r\none", 1, "POST")
	obs.done(1) // the upstream connection is pooled
	resps, _, _ := rawExchange(t, f.addr, "POST /2 HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\n\r\ntwo", 1, "POST")
	if n := requests.Load(); n != 2 || resps[0].StatusCode != http.StatusBadGateway {
		t.Fatalf("upstream got %d requests, client %d; want 2 and 502", n, resps[0].StatusCode)
	}
}

func TestRoundTripNoResendAfterInterimResponse(t *testing.T) {
	up, requests := interimThenClose(t)
	pool := poolTo(up)
	for i := range 2 {
		r, _ := http.NewRequest("GET", fmt.Sprintf("http://w/%d", i+1), nil)
		resp, err := pool.RoundTrip(r)
		if err == nil {
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if i == 1 && err == nil {
			t.Fatalf("second request answered %d", resp.StatusCode)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := requests.Load(); n != 2 {
		t.Fatalf("upstream got %d requests, want 2", n)
	}
}
