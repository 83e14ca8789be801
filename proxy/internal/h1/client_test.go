package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// countingPool dials addr and counts the dials.
func countingPool(addr string) (*Pool, *atomic.Int32) {
	var n atomic.Int32
	var d net.Dialer
	return &Pool{Dial: func(ctx context.Context) (net.Conn, error) {
		n.Add(1)
		return d.DialContext(ctx, "tcp", addr)
	}}, &n
}

func TestRoundTrip(t *testing.T) {
	up := upstream(t)
	pool, dials := countingPool(up.Listener.Addr().String())
	for _, tt := range echoCases() {
		t.Run(tt.name, func(t *testing.T) {
			// What the router does on the server path, the caller does here.
			r := tt.request(t, "http://web.test")
			r.Header.Del("X-Drop")
			r.Header.Set("X-Routed", "yes")
			resp, err := pool.RoundTrip(r)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Close != tt.upClosed {
				t.Errorf("resp.Close %v, want %v", resp.Close, tt.upClosed)
			}
			tt.check(t, resp)
		})
	}
	// One connection for all but the one the upstream closed.
	if n := dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2 (the upstream closed one connection)", n)
	}
	if pool.Idle() != 1 {
		t.Errorf("%d idle connections, want 1", pool.Idle())
	}
}

func TestRoundTripRetriesStaleConnection(t *testing.T) {
	addr, conns := oneShot(t)
	pool := poolTo(addr)
	for i := range 3 {
		r := httptest.NewRequest("GET", "http://w/", nil)
		r.RequestURI = ""
		resp, err := pool.RoundTrip(r)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond) // the upstream's close reaches the pooled connection
	}
	if conns.Load() < 3 {
		t.Errorf("upstream saw %d connections, want one per request", conns.Load())
	}
}

func TestRoundTripCancel(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	defer close(release)
	pool, _ := countingPool(up.Listener.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := httptest.NewRequest("GET", "http://w/", nil).WithContext(ctx)
	r.RequestURI = ""
	start := time.Now()
	_, err := pool.RoundTrip(r)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if pool.Idle() != 0 {
		t.Error("an aborted connection went back to the pool")
	}
}

func TestRoundTripRefuses(t *testing.T) {
	var served atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }))
	defer up.Close()
	pool, _ := countingPool(up.Listener.Addr().String())
	tests := []struct {
		name string
		mod  func(*http.Request)
		want error
	}{
		{name: "upgrade", mod: func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }, want: ErrUnsupported},
		{name: "expect", mod: func(r *http.Request) { r.Header.Set("Expect", "100-continue") }, want: ErrUnsupported},
		{name: "CRLF in a value", mod: func(r *http.Request) { r.Header["X-Evil"] = []string{"a\r\nX-Injected: 1"} }},
		{name: "CRLF in the host", mod: func(r *http.Request) { r.Host = "w\r\nX: y" }},
		{name: "space in the host", mod: func(r *http.Request) { r.Host = "w x" }},
		{name: "space in the method", mod: func(r *http.Request) { r.Method = "GET /admin HTTP/1.1" }},
		{name: "space in the query", mod: func(r *http.Request) { r.URL.RawQuery = "a HTTP/1.1" }},
		{name: "field name not a token", mod: func(r *http.Request) { r.Header["X-A: b"] = []string{"c"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://w/", nil)
			r.RequestURI = ""
			tt.mod(r)
			_, err := pool.RoundTrip(r)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
	// Nothing reached the upstream: no request was smuggled in a header.
	time.Sleep(50 * time.Millisecond)
	if n := served.Load(); n != 0 {
		t.Errorf("upstream served %d requests", n)
	}
}

func TestRoundTripBodyClosedEarly(t *testing.T) {
	up := upstream(t)
	pool, _ := countingPool(up.Listener.Addr().String())
	r := httptest.NewRequest("POST", "http://w/", strings.NewReader(strings.Repeat("x", 100)))
	r.RequestURI = ""
	resp, err := pool.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if pool.Idle() != 0 {
		t.Error("a connection with an unread response went back to the pool")
	}
	if _, err := resp.Body.Read(buf); err == nil {
		t.Error("read after Close succeeded")
	}
}

// TestRoundTripAbortCtx: with a netx.AbortCtx for context, which the
// exchange follows without context.AfterFunc, Cancel aborts a waiting
// exchange (its connection is not pooled), and a finished one leaves the
// context (its connection is pooled).
func TestRoundTripAbortCtx(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	defer close(release)
	pool, _ := countingPool(up.Listener.Addr().String())
	req := func(path string, a *netx.AbortCtx) *http.Request {
		r := httptest.NewRequest("GET", "http://w"+path, nil).WithContext(a)
		r.RequestURI = ""
		return r
	}

	a := &netx.AbortCtx{}
	resp, err := pool.RoundTrip(req("/ok", a))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
		t.Fatalf("body %q, %v", b, err)
	}
	resp.Body.Close()
	if pool.Idle() != 1 {
		t.Errorf("%d idle connections after a whole response, want 1", pool.Idle())
	}
	if !a.OnAbort(abortNop{}) {
		t.Error("the finished exchange still holds its request's AbortCtx")
	}

	a = &netx.AbortCtx{}
	time.AfterFunc(100*time.Millisecond, func() { a.Cancel(errClientGone) })
	start := time.Now()
	if _, err := pool.RoundTrip(req("/hang", a)); err == nil {
		t.Fatal("an aborted exchange: no error")
	} else if !errors.Is(err, errClientGone) {
		t.Errorf("err %v, want the cause", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("abort took %v", d)
	}
	if pool.Idle() != 0 {
		t.Error("an aborted connection went back to the pool")
	}
}

type abortNop struct{}

func (abortNop) Abort(error) {}

// TestResponseHead: the http.Response built from an upstream's head keeps
// Content-Length when the body's length is known (or a HEAD's GET would
// have it), as its own text unless that has leading zeros, and leaves it
// out otherwise. A response with a body of known length costs four
// allocations (eight before the response, its body and its header's values
// were one, and the Content-Length value a slice of the head's text): the
// head's text, the header map, the map's group, and the response with its
// body and values.
func TestResponseHead(t *testing.T) {
	tests := []struct {
		name, in, method string
		wantCL           []string
		wantLength       int64
	}{
		{name: "fixed", in: "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nX-A: 1\r\n\r\n", wantCL: []string{"1024"}, wantLength: 1024},
		{name: "zero", in: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", wantCL: []string{"0"}, wantLength: 0},
		{name: "leading zeros", in: "HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n", wantCL: []string{"7"}, wantLength: 7},
		{name: "head", in: "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n", method: http.MethodHead, wantCL: []string{"30"}, wantLength: 30},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", wantLength: -1},
		{name: "no content", in: "HTTP/1.1 204 No Content\r\n\r\n", wantLength: -1},
		{name: "until close", in: "HTTP/1.0 200 OK\r\n\r\n", wantLength: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			if err := h.ReadResponse(bufio.NewReader(strings.NewReader(tt.in))); err != nil {
				t.Fatal(err)
			}
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			r := httptest.NewRequest(method, "/", nil)
			u := &upConn{br: bufio.NewReader(strings.NewReader(""))}
			resp := (&Pool{}).response(u, r, &h)
			if got := resp.Header["Content-Length"]; !slices.Equal(got, tt.wantCL) || resp.ContentLength != tt.wantLength {
				t.Errorf("Content-Length %q, ContentLength %d; want %q, %d", got, resp.ContentLength, tt.wantCL, tt.wantLength)
			}
			if _, ok := resp.Header["Transfer-Encoding"]; ok {
				t.Errorf("Transfer-Encoding in the header: %q", resp.Header)
			}
		})
	}
	var h Head
	if err := h.ReadResponse(bufio.NewReader(strings.NewReader(tests[0].in))); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	u := &upConn{br: bufio.NewReader(strings.NewReader(""))}
	p := &Pool{}
	if n := testing.AllocsPerRun(100, func() {
		h.text = "" // a new head's text, as for every response
		_ = p.response(u, r, &h)
	}); n != 4 {
		t.Errorf("response: %v allocations, want 4", n)
	}
}

// TestRequestHeadAllocations: the http.Request built from a request head
// for a round tripper (the HTTP/2 hop) costs five allocations: the head's
// text, the header map and its group, the body with the request's context,
// URL and header values, and the request (WithContext's copy). A head with
// more fields than the body holds values for allocates an array for them
// (and its map, past 8 names, a table: two more).
func TestRequestHeadAllocations(t *testing.T) {
	fields := "Host: web\r\nUser-Agent: t\r\nAccept: */*\r\nContent-Length: 4\r\nX-A: 1\r\nX-B: 2\r\n"
	for _, tt := range []struct {
		name   string
		extra  int // fields beyond those above
		allocs float64
	}{
		{name: "fits", allocs: 5},
		{name: "more fields than the body holds", extra: headVals, allocs: 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			head := "POST /x HTTP/1.1\r\n" + fields
			for i := range tt.extra {
				head += "X-More-" + strconv.Itoa(i) + ": v\r\n"
			}
			x := &exchange{br: bufio.NewReader(strings.NewReader(""))}
			if err := x.req.ReadRequest(bufio.NewReader(strings.NewReader(head + "\r\nbody"))); err != nil {
				t.Fatal(err)
			}
			r, _, err := x.httpRequest(false)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Get("X-B"); got != "2" || len(r.Header) != 4+tt.extra || r.ContentLength != 4 {
				t.Errorf("header %q, length %d", r.Header, r.ContentLength)
			}
			if n := testing.AllocsPerRun(100, func() {
				x.req.text = "" // a new head's text, as for every request
				_, _, _ = x.httpRequest(false)
			}); n != tt.allocs {
				t.Errorf("httpRequest: %v allocations, want %v", n, tt.allocs)
			}
		})
	}
}

// TestRoundTripNoEmptyUserAgent: a User-Agent of "" (net/http's "send
// none", as ReverseProxy sets it for a request without one) is not
// written: the upstream sees no User-Agent, as it would from net/http's
// transport. Other empty fields are written.
func TestRoundTripNoEmptyUserAgent(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ua := r.Header["User-Agent"]
		_, empty := r.Header["X-Empty"]
		fmt.Fprintf(w, "ua=%v %q empty=%v", ua, r.UserAgent(), empty)
	}))
	defer app.Close()
	req, _ := http.NewRequest(http.MethodGet, app.URL, nil)
	req.Header["User-Agent"] = []string{""}
	req.Header["X-Empty"] = []string{""}
	resp, err := poolTo(strings.TrimPrefix(app.URL, "http://")).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `ua=false "" empty=true`; string(body) != want {
		t.Errorf("upstream saw %s, want %s", body, want)
	}
}
