package h1

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
	big := strings.Repeat("b", 3*bufSize+7)
	tests := []struct {
		name      string
		method    string
		path      string
		body      string
		streaming bool
		trailer   http.Header
		status    int
		want      string
		wantLen   string
		wantTE    string
		respTrail string
		close     bool
	}{
		{name: "get", method: "GET", path: "/", status: 200, want: "GET ", wantLen: "0"},
		{name: "post", method: "POST", path: "/", body: "hello", status: 200, want: "POST hello", wantLen: "5"},
		{name: "large body", method: "POST", path: "/", body: big, status: 200, want: "POST " + big, wantLen: "49159"},
		{name: "streaming body with trailer", method: "PUT", path: "/", body: "streamed", streaming: true,
			trailer: http.Header{"X-Check": {"1"}}, status: 200, want: "PUT streamed", wantLen: "8", wantTE: "chunked"},
		{name: "chunked response with trailer", method: "GET", path: "/chunked", status: 200, want: "part0;part1;part2;", wantLen: "0", respTrail: "3"},
		{name: "head", method: "HEAD", path: "/", status: 200, want: ""},
		{name: "no content", method: "DELETE", path: "/nocontent", status: 204, want: ""},
		{name: "upstream closes", method: "GET", path: "/close", status: 200, want: "GET ", wantLen: "0", close: true},
		{name: "after a closed one", method: "GET", path: "/", status: 200, want: "GET ", wantLen: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := httptest.NewRequest(tt.method, "http://web.test/"+strings.TrimPrefix(tt.path, "/"), body)
			r.RequestURI = ""
			if tt.streaming {
				r.Body = io.NopCloser(io.MultiReader(strings.NewReader(tt.body)))
				r.ContentLength = -1
				r.Trailer = tt.trailer
			}
			r.Header.Set("X-Routed", "yes")
			r.Header.Set("Connection", "x-drop")
			r.Header.Set("Keep-Alive", "timeout=5")
			resp, err := pool.RoundTrip(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || string(got) != tt.want {
				t.Fatalf("got %d %.40q, want %d %.40q", resp.StatusCode, got, tt.status, tt.want)
			}
			if tt.wantLen != "" && resp.Header.Get("X-Got-Length") != tt.wantLen {
				t.Errorf("upstream read %s body bytes, want %s", resp.Header.Get("X-Got-Length"), tt.wantLen)
			}
			if tt.method != "HEAD" && tt.status == 200 && resp.Header.Get("X-Got-TE") != tt.wantTE {
				t.Errorf("upstream saw Transfer-Encoding %q, want %q", resp.Header.Get("X-Got-TE"), tt.wantTE)
			}
			if tt.status == 200 && (resp.Header.Get("X-Got-Routed") != "yes" || resp.Header.Get("X-Got-Keep-Alive") != "") {
				t.Errorf("upstream saw X-Routed %q Keep-Alive %q", resp.Header.Get("X-Got-Routed"), resp.Header.Get("X-Got-Keep-Alive"))
			}
			if resp.Trailer.Get("X-Sum") != tt.respTrail {
				t.Errorf("response trailer X-Sum %q, want %q", resp.Trailer.Get("X-Sum"), tt.respTrail)
			}
			if resp.Close != tt.close {
				t.Errorf("resp.Close %v, want %v", resp.Close, tt.close)
			}
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
	up := upstream(t)
	pool, dials := countingPool(up.Listener.Addr().String())
	tests := []struct {
		name string
		mod  func(*http.Request)
		want error
	}{
		{name: "upgrade", mod: func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }, want: ErrUnsupported},
		{name: "expect", mod: func(r *http.Request) { r.Header.Set("Expect", "100-continue") }, want: ErrUnsupported},
		{name: "CRLF in a value", mod: func(r *http.Request) { r.Header["X-Evil"] = []string{"a\r\nX-Injected: 1"} }},
		{name: "CRLF in the host", mod: func(r *http.Request) { r.Host = "w\r\nX: y" }},
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
	if dials.Load() > 2 {
		t.Errorf("%d dials for refused requests", dials.Load())
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
