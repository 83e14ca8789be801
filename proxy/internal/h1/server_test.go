package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// chanListener is a net.Listener fed by the handover function, so that a
// real net/http server serves what the fast path hands over.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn, 16), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// recObs records what the server reports of each exchange.
type recObs struct {
	mu     sync.Mutex
	heads  []int
	status []int
	errs   []error
}

func (o *recObs) ResponseHead(resp Response) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.heads = append(o.heads, resp.Code())
}

func (o *recObs) Done(status int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.status = append(o.status, status)
	o.errs = append(o.errs, err)
}

// done waits a little for n exchanges to end (Done follows the response
// the client already read) and returns what was recorded.
func (o *recObs) done(n int) ([]int, []error) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		o.mu.Lock()
		got := len(o.status)
		o.mu.Unlock()
		if got >= n {
			break
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int(nil), o.status...), append([]error(nil), o.errs...)
}

// testRouter sends every request to pool, except those decline names (to
// the general path) and, with status, answers an error itself.
type testRouter struct {
	pool    *Pool
	rt      func(*http.Request) (*http.Response, error)
	obs     *recObs
	decline func(*Head) bool
	status  int
}

func (r *testRouter) Route(h *Head) (Call, bool) {
	if r.decline != nil && r.decline(h) {
		return Call{}, false
	}
	var obs Observer
	if r.obs != nil {
		obs = r.obs
	}
	if r.status != 0 {
		return Call{Status: r.status, Err: errors.New("no endpoints"), Obs: obs}, true
	}
	h.Drop("X-Drop")
	h.Add("X-Routed", "yes")
	if r.rt != nil {
		return Call{RoundTrip: r.rt, Obs: obs}, true
	}
	return Call{Pool: r.pool, Obs: obs}, true
}

type fixture struct {
	addr    string
	srv     *Server
	handed  atomic.Int32
	general *http.Server
}

// startFast serves the fast path on a loopback listener with rt; what it
// hands over is answered by net/http with "general".
func startFast(t *testing.T, rt Router) *fixture {
	t.Helper()
	return startFastWith(t, rt, &Server{})
}

// startFastWith is startFast with the fast path's server srv.
func startFastWith(t *testing.T, rt Router, srv *Server) *fixture {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv}
	f.addr = l.Addr().String()
	cl := newChanListener()
	f.general = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", "general")
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "general %s %s", r.Method, r.URL.Path)
	})}
	go func() { _ = f.general.Serve(cl) }()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.srv.ServeConn(c, rt, func(hc net.Conn) {
				f.handed.Add(1)
				cl.ch <- hc
			})
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		_ = f.general.Close()
	})
	return f
}

func poolTo(addr string) *Pool {
	var d net.Dialer
	return &Pool{Dial: func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }}
}

// upstream is a net/http server that answers what the tests ask of it.
func upstream(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Got-Routed", r.Header.Get("X-Routed"))
		w.Header().Set("X-Got-Drop", r.Header.Get("X-Drop"))
		w.Header().Set("X-Got-Keep-Alive", r.Header.Get("Keep-Alive"))
		w.Header().Set("X-Got-TE", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("X-Got-Length", strconv.Itoa(len(body)))
		w.Header().Set("X-Got-Trailer", r.Trailer.Get("X-Check"))
		switch r.URL.Path {
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			return
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "3")
			return
		case "/close":
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(r.Method)+1+len(body)))
		_, _ = io.WriteString(w, r.Method+" ")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// echoCase is one request to upstream() and what its answer must show.
type echoCase struct {
	name, method, path, body string
	chunked                  bool // the body is sent without a length, with trailer X-Check: 1
	status                   int
	want                     string // response body
	wantLen                  string // body bytes the upstream read ("": not checked)
	wantTE                   string // Transfer-Encoding the upstream saw
	trailer                  string // response trailer X-Sum
	upClosed                 bool   // the upstream closes the connection after answering
}

// echoCases are the exchanges both the server and RoundTrip must forward.
func echoCases() []echoCase {
	big := strings.Repeat("b", 3*bufSize+7)
	return []echoCase{
		{name: "get", method: "GET", path: "/", status: 200, want: "GET ", wantLen: "0"},
		{name: "post small body", method: "POST", path: "/", body: "hello", status: 200, want: "POST hello", wantLen: "5"},
		{name: "post body larger than the buffer", method: "POST", path: "/", body: big, status: 200, want: "POST " + big, wantLen: strconv.Itoa(len(big))},
		{name: "chunked request body with trailer", method: "PUT", path: "/", body: "streamed", chunked: true, status: 200, want: "PUT streamed", wantLen: "8", wantTE: "chunked"},
		{name: "chunked response with trailer", method: "GET", path: "/chunked", status: 200, want: "part0;part1;part2;", trailer: "3", wantLen: "0"},
		{name: "head", method: "HEAD", path: "/", status: 200, want: ""},
		{name: "no content", method: "DELETE", path: "/nocontent", status: 204, want: ""},
		{name: "upstream closes after the response", method: "GET", path: "/close", status: 200, want: "GET ", wantLen: "0", upClosed: true},
		{name: "after a closed connection", method: "GET", path: "/", status: 200, want: "GET ", wantLen: "0"},
	}
}

// request builds the case's request to base (scheme and host), with a
// field the router drops and hop-by-hop fields the proxy must not forward.
func (c echoCase) request(t *testing.T, base string) *http.Request {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	r, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.chunked {
		r.Body, r.ContentLength = io.NopCloser(io.MultiReader(strings.NewReader(c.body))), -1
		r.Trailer = http.Header{"X-Check": {"1"}}
	}
	r.Header.Set("X-Drop", "secret")
	r.Header.Set("Keep-Alive", "timeout=5")
	return r
}

// check reads resp and compares it with what upstream() answers to c.
func (c echoCase) check(t *testing.T, resp *http.Response) {
	t.Helper()
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != c.status || string(got) != c.want {
		t.Fatalf("got %d %.40q, want %d %.40q", resp.StatusCode, got, c.status, c.want)
	}
	h := resp.Header
	if h.Get("X-Got-Routed") != "yes" || h.Get("X-Got-Drop") != "" || h.Get("X-Got-Keep-Alive") != "" {
		t.Errorf("upstream saw X-Routed %q, X-Drop %q, Keep-Alive %q; want yes, dropped, dropped",
			h.Get("X-Got-Routed"), h.Get("X-Got-Drop"), h.Get("X-Got-Keep-Alive"))
	}
	if l := h.Get("X-Got-Length"); c.wantLen != "" && c.method != "HEAD" && l != c.wantLen {
		t.Errorf("upstream read %s body bytes, want %s", l, c.wantLen)
	}
	if te := h.Get("X-Got-TE"); te != c.wantTE {
		t.Errorf("upstream saw Transfer-Encoding %q, want %q", te, c.wantTE)
	}
	if tr, want := h.Get("X-Got-Trailer"), map[bool]string{true: "1"}[c.chunked]; tr != want {
		t.Errorf("upstream saw request trailer X-Check %q, want %q", tr, want)
	}
	if resp.Trailer.Get("X-Sum") != c.trailer {
		t.Errorf("trailer X-Sum %q, want %q", resp.Trailer.Get("X-Sum"), c.trailer)
	}
}

// viaTransport is a Call.RoundTrip through an http.Transport to addr, as
// the outbound proxy sends requests on an HTTP/2 connection.
func viaTransport(addr string) func(*http.Request) (*http.Response, error) {
	tr := &http.Transport{}
	return func(r *http.Request) (*http.Response, error) {
		r.URL.Scheme, r.URL.Host = "http", addr
		r.RequestURI = ""
		return tr.RoundTrip(r)
	}
}

func TestServerForwards(t *testing.T) {
	t.Run("pool", func(t *testing.T) {
		testServerForwards(t, func(addr string, obs *recObs) Router { return &testRouter{pool: poolTo(addr), obs: obs} })
	})
	t.Run("round tripper", func(t *testing.T) {
		testServerForwards(t, func(addr string, obs *recObs) Router { return &testRouter{rt: viaTransport(addr), obs: obs} })
	})
}

func testServerForwards(t *testing.T, router func(addr string, obs *recObs) Router) {
	up := upstream(t)
	obs := &recObs{}
	f := startFast(t, router(up.Listener.Addr().String(), obs))
	tests := echoCases()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Do(tt.request(t, "http://"+f.addr))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Get("X-Path") != "" {
				t.Fatal("served by the general path")
			}
			if resp.Close {
				t.Error("the proxy closed the client connection")
			}
			tt.check(t, resp)
		})
	}
	if n := f.handed.Load(); n != 0 {
		t.Errorf("%d connections handed over", n)
	}
	status, errs := obs.done(len(tests))
	if len(status) != len(tests) {
		t.Fatalf("observer saw %d exchanges, want %d", len(status), len(tests))
	}
	obs.mu.Lock()
	heads := obs.heads
	obs.mu.Unlock()
	for i, err := range errs {
		if err != nil || status[i] != tests[i].status || heads[i] != tests[i].status {
			t.Errorf("exchange %d: observer head %d, done %d, err %v; want %d", i, heads[i], status[i], err, tests[i].status)
		}
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// rawExchange writes raw to a new connection and reads n responses.
func rawExchange(t *testing.T, addr, raw string, n int, method string) ([]*http.Response, []string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var resps []*http.Response
	var bodies []string
	for range n {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		for err == nil && resp.StatusCode < 200 {
			resp, err = http.ReadResponse(br, &http.Request{Method: method})
		}
		if err != nil {
			t.Fatalf("response %d: %v", len(resps), err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		resps, bodies = append(resps, resp), append(bodies, string(b))
	}
	return resps, bodies, c
}

func TestServerPipelinedAndClose(t *testing.T) {
	up := upstream(t)
	f := startFast(t, &testRouter{pool: poolTo(up.Listener.Addr().String())})
	raw := "POST /a HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\n\r\none" +
		"GET /b HTTP/1.1\r\nHost: w\r\n\r\n" +
		"POST /c HTTP/1.1\r\nHost: w\r\nConnection: close\r\nContent-Length: 5\r\n\r\nthree"
	resps, bodies, c := rawExchange(t, f.addr, raw, 3, "POST")
	if want := []string{"POST one", "GET ", "POST three"}; strings.Join(bodies, "|") != strings.Join(want, "|") {
		t.Fatalf("bodies %q, want %q", bodies, want)
	}
	if !resps[2].Close || resps[0].Close || resps[1].Close {
		t.Errorf("Connection: close on responses %v %v %v, want only the last", resps[0].Close, resps[1].Close, resps[2].Close)
	}
	// The proxy closes the connection after the request that asked for it.
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after close: %v, want EOF", err)
	}
}

func TestServerHandover(t *testing.T) {
	up := upstream(t)
	tests := []struct {
		name string
		raw  string
	}{
		{name: "upgrade", raw: "GET /ws HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"},
		{name: "expect continue", raw: "PUT /e HTTP/1.1\r\nHost: w\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"},
		{name: "http/1.0", raw: "GET /old HTTP/1.0\r\nHost: w\r\n\r\n"},
		{name: "router declines", raw: "GET /declined HTTP/1.1\r\nHost: w\r\n\r\n"},
		{name: "after a fast request", raw: "GET /fast HTTP/1.1\r\nHost: w\r\n\r\nGET /declined HTTP/1.1\r\nHost: w\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFast(t, &testRouter{pool: poolTo(up.Listener.Addr().String()), decline: func(h *Head) bool {
				return h.Target() == "/declined"
			}})
			n := strings.Count(tt.raw, "HTTP/1.")
			resps, bodies, _ := rawExchange(t, f.addr, tt.raw, n, "GET")
			last := resps[n-1]
			if last.Header.Get("X-Path") != "general" || !strings.HasPrefix(bodies[n-1], "general ") {
				t.Fatalf("last response %d %q not from the general path", last.StatusCode, bodies[n-1])
			}
			if n > 1 && resps[0].Header.Get("X-Path") != "" {
				t.Error("first request not on the fast path")
			}
			if f.handed.Load() != 1 {
				t.Errorf("%d handovers, want 1", f.handed.Load())
			}
		})
	}
}

func TestServerMalformedGoesToNetHTTP(t *testing.T) {
	f := startFast(t, &testRouter{})
	resps, _, _ := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: w\r\nContent-Length: 1, 2\r\n\r\n", 1, "GET")
	if resps[0].StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400 from net/http", resps[0].StatusCode)
	}
}

func TestServerErrors(t *testing.T) {
	deadAddr := closedPort(t)
	tests := []struct {
		name   string
		rt     *testRouter
		status int
		reason string
	}{
		{name: "router answers", rt: &testRouter{status: http.StatusServiceUnavailable}, status: 503, reason: "no endpoints"},
		{name: "upstream refuses", rt: &testRouter{pool: poolTo(deadAddr)}, status: 502, reason: "refused"},
		{name: "dial times out", rt: &testRouter{pool: &Pool{Dial: func(ctx context.Context) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}}, status: 504, reason: "deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rt.obs = &recObs{}
			f := startFast(t, tt.rt)
			f.srv.DialTimeout = 100 * time.Millisecond
			raw := "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 4\r\n\r\nbody" + "GET / HTTP/1.1\r\nHost: w\r\n\r\n"
			resps, _, _ := rawExchange(t, f.addr, raw, 2, "GET")
			for i, resp := range resps {
				if resp.StatusCode != tt.status || !strings.Contains(resp.Header.Get("Conduit-Proxy-Error"), tt.reason) {
					t.Errorf("response %d: %d %q, want %d with %q", i, resp.StatusCode, resp.Header.Get("Conduit-Proxy-Error"), tt.status, tt.reason)
				}
			}
			// The connection survived the first error: the second request was read.
			if resps[0].Close {
				t.Error("connection closed after an error whose request body was read")
			}
			status, errs := tt.rt.obs.done(2)
			if len(status) != 2 || status[0] != 0 || errs[0] == nil {
				t.Errorf("observer: status %v errs %v, want two failures without status", status, errs)
			}
		})
	}
}

// oneShot is an upstream that answers one request per connection and then
// closes it without saying so, like a server whose keep-alive timer fired.
func oneShot(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				b, _ := io.ReadAll(req.Body)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
			}()
		}
	}()
	return l.Addr().String(), &conns
}

func TestServerRetriesStalePooledConnection(t *testing.T) {
	addr, conns := oneShot(t)
	pool := poolTo(addr)
	f := startFast(t, &testRouter{pool: pool})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 3 {
		body := fmt.Sprintf("req%d", i)
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != body {
			t.Fatalf("request %d: %d %q (%s)", i, resp.StatusCode, b, resp.Header.Get("Conduit-Proxy-Error"))
		}
		// Let the upstream's close reach the pooled connection.
		time.Sleep(20 * time.Millisecond)
	}
	if n := conns.Load(); n < 3 {
		t.Errorf("upstream saw %d connections, want one per request", n)
	}
}

func TestServerPoolsUpstreamConnections(t *testing.T) {
	up := upstream(t)
	var dials atomic.Int32
	var d net.Dialer
	pool := &Pool{Dial: func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, "tcp", up.Listener.Addr().String())
	}}
	f := startFast(t, &testRouter{pool: pool})
	raw := strings.Repeat("GET / HTTP/1.1\r\nHost: w\r\n\r\n", 5)
	rawExchange(t, f.addr, raw, 5, "GET")
	// The connection returns to the pool after the response is flushed.
	for deadline := time.Now().Add(5 * time.Second); pool.Idle() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if dials.Load() != 1 || pool.Idle() != 1 {
		t.Errorf("%d dials, %d idle; want 1 and 1", dials.Load(), pool.Idle())
	}
	pool.CloseIdle(true)
	if pool.Idle() != 0 {
		t.Error("idle connections after CloseIdle")
	}
}

func TestServerShutdownClosesIdleConnections(t *testing.T) {
	up := upstream(t)
	f := startFast(t, &testRouter{pool: poolTo(up.Listener.Addr().String())})
	_, _, c := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: w\r\n\r\n", 1, "GET")
	f.srv.Shutdown()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection after Shutdown: read %v, want EOF", err)
	}
	// New connections are closed without being served.
	c2, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("new connection after Shutdown: read %v, want EOF", err)
	}
}

func TestServerShutdownLetsExchangeFinish(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "late")
	}))
	defer up.Close()
	f := startFast(t, &testRouter{pool: poolTo(up.Listener.Addr().String())})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: w\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // the request is upstream
	f.srv.Shutdown()
	close(release)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "late" || !resp.Close {
		t.Fatalf("in-flight response %q close %v; want it whole, with Connection: close", b, resp.Close)
	}
}

func TestServerRoundTripErrors(t *testing.T) {
	deadAddr := closedPort(t)
	obs := &recObs{}
	f := startFast(t, &testRouter{rt: viaTransport(deadAddr), obs: obs})
	// A request without a body: the connection goes on after the error.
	resps, _, _ := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: w\r\n\r\nGET / HTTP/1.1\r\nHost: w\r\n\r\n", 2, "GET")
	for i, resp := range resps {
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(resp.Header.Get("Conduit-Proxy-Error"), "refused") {
			t.Errorf("response %d: %d %q, want 502 naming the refusal", i, resp.StatusCode, resp.Header.Get("Conduit-Proxy-Error"))
		}
	}
	if resps[0].Close {
		t.Error("connection closed after an error on a request without a body")
	}
	// A body the round tripper never read: the connection closes.
	resps, _, c := rawExchange(t, f.addr, "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\n\r\nhello", 1, "POST")
	if resps[0].StatusCode != http.StatusBadGateway || !resps[0].Close {
		t.Errorf("POST: %d close %v, want 502 with Connection: close", resps[0].StatusCode, resps[0].Close)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after close: %v, want EOF", err)
	}
	if status, errs := obs.done(3); len(status) != 3 || errs[2] == nil {
		t.Errorf("observer: %v %v, want three failures", status, errs)
	}
}

func TestServerRoundTripEarlyResponse(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answers without reading the (large) body.
		w.Header().Set("Connection", "close")
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	defer up.Close()
	f := startFast(t, &testRouter{rt: viaTransport(up.Listener.Addr().String())})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// Part of a large body, then nothing: the upstream answers early and
	// the rest of the body never comes.
	fmt.Fprintf(c, "PUT /upload HTTP/1.1\r\nHost: w\r\nContent-Length: %d\r\n\r\n%s", 4<<20, strings.Repeat("x", 1024))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Fatalf("%d close %v, want the upstream's 413 and Connection: close", resp.StatusCode, resp.Close)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	// The proxy does not wait for the rest of the body: it closes.
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the early response: read %v, want EOF", err)
	}
}

// Between exchanges neither the client connection nor the pooled upstream
// one holds its 16 KiB buffers; they come back for the next request,
// whose head may be larger than the idle buffer.
func TestIdleConnectionsLendTheirBuffers(t *testing.T) {
	up := upstream(t)
	pool := poolTo(up.Listener.Addr().String())
	f := startFast(t, &testRouter{pool: pool})
	settle := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for lent.Load() > want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := lent.Load(); got > want {
			t.Fatalf("%d buffer pairs lent, want %d: an idle connection keeps its buffers", got, want)
		}
	}
	base := lent.Load()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, req := range []string{
		"POST /a HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\n\r\none",
		"POST /b HTTP/1.1\r\nHost: w\r\nX-Big: " + strings.Repeat("h", 2*idleReadSize) + "\r\nContent-Length: 3\r\n\r\ntwo",
	} {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := []string{"POST one", "POST two"}[i]; string(b) != want || resp.Header.Get("X-Got-Routed") != "yes" {
			t.Fatalf("request %d: body %q, want %q", i, b, want)
		}
		settle(base)
		if pool.Idle() != 1 {
			t.Fatalf("%d idle upstream connections, want 1", pool.Idle())
		}
	}
}

// rerouteObs is a recObs that is a Rerouter: it sends a request that was
// not sent to next, at most once per request.
type rerouteObs struct {
	*recObs
	next     Call
	decline  bool
	reroutes atomic.Int32
	errs     chan error
}

func (o *rerouteObs) Reroute(err error) (Call, bool) {
	o.errs <- err
	if o.decline {
		return Call{}, false
	}
	o.reroutes.Add(1)
	o.Done(0, err) // the failed attempt ends here, as the contract says
	next := o.next
	next.Obs = o.recObs // the second attempt is not rerouted again
	return next, true
}

// rerouteRouter sends each request first to a call that cannot connect.
type rerouteRouter struct {
	first Call
	obs   *rerouteObs
}

func (r *rerouteRouter) Route(h *Head) (Call, bool) {
	h.Drop("X-Drop")
	h.Add("X-Routed", "yes")
	c := r.first
	c.Obs = r.obs
	return c, true
}

// TestServerReroutes: a request whose upstream could not be reached
// (netx.ErrUnsent) is offered to a Rerouter and forwarded, whole, to the
// call it returns, from either kind of call to either kind, whatever its
// body; a request that was sent is never offered.
func TestServerReroutes(t *testing.T) {
	up := upstream(t).Listener.Addr().String()
	dead := closedPort(t)
	// unsentRT fails as the outbound's HTTP/2 client does when it cannot
	// connect: before reading the body.
	unsentRT := func(*http.Request) (*http.Response, error) {
		return nil, netx.Unsent(fmt.Errorf("h2: connect: dial tcp %s: connection refused", dead))
	}
	// restoringRT fails as the HTTP/2 client does after the peer refused
	// the stream: the body was read, and is given back on the request.
	restoringRT := func(r *http.Request) (*http.Response, error) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		return nil, netx.Unsent(errors.New("h2: stream refused unprocessed"))
	}
	firsts := map[string]Call{"pool": {Pool: poolTo(dead)}, "round tripper": {RoundTrip: unsentRT},
		"round tripper that read the body": {RoundTrip: restoringRT}}
	nexts := map[string]Call{"pool": {Pool: poolTo(up)}, "round tripper": {RoundTrip: viaTransport(up)}}
	for fname, first := range firsts {
		for nname, next := range nexts {
			if first.RoundTrip != nil && nname == "pool" && fname == "round tripper that read the body" {
				continue // the body is no longer on the client connection: "body read, then a pool" below
			}
			t.Run(fname+" to "+nname, func(t *testing.T) {
				obs := &rerouteObs{recObs: &recObs{}, next: next, errs: make(chan error, 64)}
				f := startFast(t, &rerouteRouter{first: first, obs: obs})
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				cases := echoCases()
				for _, tt := range cases {
					t.Run(tt.name, func(t *testing.T) {
						resp, err := client.Do(tt.request(t, "http://"+f.addr))
						if err != nil {
							t.Fatal(err)
						}
						tt.check(t, resp)
						if err := <-obs.errs; !errors.Is(err, netx.ErrUnsent) {
							t.Errorf("offered %v, want an error marked unsent", err)
						}
					})
				}
				if n := obs.reroutes.Load(); n != int32(len(cases)) {
					t.Errorf("%d reroutes for %d requests", n, len(cases))
				}
				// Each request: its failed attempt and the answered one.
				if status, _ := obs.done(2 * len(cases)); len(status) != 2*len(cases) {
					t.Errorf("observer saw %d attempts end, want %d", len(status), 2*len(cases))
				}
			})
		}
	}

	t.Run("body read, then a pool", func(t *testing.T) {
		obs := &rerouteObs{recObs: &recObs{}, next: Call{Pool: poolTo(up)}, errs: make(chan error, 4)}
		f := startFast(t, &rerouteRouter{first: Call{RoundTrip: restoringRT}, obs: obs})
		resps, _, _ := rawExchange(t, f.addr, "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\n\r\nhello", 1, "POST")
		if resps[0].StatusCode != http.StatusBadGateway {
			t.Errorf("%d, want 502: a pool sends the body from the client connection, which no longer holds it", resps[0].StatusCode)
		}
	})

	t.Run("declined", func(t *testing.T) {
		obs := &rerouteObs{recObs: &recObs{}, decline: true, errs: make(chan error, 4)}
		f := startFast(t, &rerouteRouter{first: Call{Pool: poolTo(dead)}, obs: obs})
		resps, _, _ := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: w\r\n\r\n", 1, "GET")
		if resps[0].StatusCode != http.StatusBadGateway || !strings.Contains(resps[0].Header.Get("Conduit-Proxy-Error"), "refused") {
			t.Errorf("%d %q, want 502 naming the refusal", resps[0].StatusCode, resps[0].Header.Get("Conduit-Proxy-Error"))
		}
		if status, errs := obs.done(1); len(status) != 1 || status[0] != 0 || errs[0] == nil {
			t.Errorf("observer: %v %v, want one failure", status, errs)
		}
	})

	t.Run("sent, then failed: not offered", func(t *testing.T) {
		mute := mutePeer(t)
		obs := &rerouteObs{recObs: &recObs{}, next: Call{Pool: poolTo(up)}, errs: make(chan error, 4)}
		f := startFast(t, &rerouteRouter{first: Call{Pool: poolTo(mute)}, obs: obs})
		resps, _, _ := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: w\r\n\r\n", 1, "GET")
		if resps[0].StatusCode != http.StatusBadGateway || obs.reroutes.Load() != 0 {
			t.Errorf("%d after %d reroutes; want 502 and none", resps[0].StatusCode, obs.reroutes.Load())
		}
	})
}

// mutePeer returns the address of an upstream that reads a request and
// closes the connection without answering: the request was sent.
func mutePeer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Read(make([]byte, 4096))
			c.Close()
		}
	}()
	return l.Addr().String()
}

// refusingPeer is a peer proxy that refuses every request unprocessed, as
// an inbound proxy does when its application is gone: 502 marked
// netx.HeaderUnsent. It counts the requests and the connections.
func refusingPeer(t *testing.T, requests, conns *atomic.Int32) string {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Conduit-Proxy-Error", "inbound: connect to the application at 10.0.0.9:80: connection refused")
		w.Header().Set(netx.HeaderUnsent, "1")
		w.WriteHeader(http.StatusBadGateway)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// TestServerPeerRefused: a response marked netx.HeaderUnsent from a pool
// whose Refused believes it is an unsent request, offered to the Rerouter
// with Refused's error, when its body is still buffered; otherwise it is
// answered as it came, without the mark.
func TestServerPeerRefused(t *testing.T) {
	up := upstream(t).Listener.Addr().String()
	var requests, conns atomic.Int32
	peer := refusingPeer(t, &requests, &conns)
	believing := poolTo(peer)
	believing.Refused = func(reason string) error { return fmt.Errorf("peer refused it unprocessed: %s", reason) }
	big := strings.Repeat("x", maxReplayBody+1)
	for _, tt := range []struct {
		name, method, body string
		pool               *Pool
		rerouted           bool
	}{
		{"get", "GET", "", believing, true},
		{"post", "POST", "hello", believing, true},
		{"second post, same peer connection", "POST", "again", believing, true},
		{"body larger than the buffer", "POST", big, believing, false},
		{"peer not believed", "GET", "", poolTo(peer), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			obs := &rerouteObs{recObs: &recObs{}, next: Call{Pool: poolTo(up)}, errs: make(chan error, 4)}
			f := startFast(t, &rerouteRouter{first: Call{Pool: tt.pool}, obs: obs})
			req, _ := http.NewRequest(tt.method, "http://"+f.addr+"/", strings.NewReader(tt.body))
			if tt.body == "" {
				req.Body = http.NoBody
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if _, ok := resp.Header[netx.HeaderUnsent]; ok {
				t.Errorf("%s reached the client", netx.HeaderUnsent)
			}
			if !tt.rerouted {
				if resp.StatusCode != http.StatusBadGateway || obs.reroutes.Load() != 0 {
					t.Errorf("%d after %d reroutes, want the peer's 502 and none", resp.StatusCode, obs.reroutes.Load())
				}
				return
			}
			if want := tt.method + " " + tt.body; resp.StatusCode != 200 || string(got) != want {
				t.Fatalf("%d %q, want 200 %q", resp.StatusCode, got, want)
			}
			if err := <-obs.errs; !errors.Is(err, netx.ErrUnsent) || !strings.Contains(err.Error(), "peer refused it unprocessed: inbound: connect to the application") {
				t.Errorf("offered %v, want Refused's error, with the peer's reason, marked unsent", err)
			}
			if status, _ := obs.done(2); len(status) != 2 || status[0] != 0 || status[1] != 200 {
				t.Errorf("observer saw attempts end with %v, want [0 200]", status)
			}
		})
	}
	if n := conns.Load(); n != 2 {
		// A refusal leaves the connection usable: one for the believing
		// pool's four requests, one for the other pool's.
		t.Errorf("the peer saw %d connections for %d requests, want 2", n, requests.Load())
	}

	t.Run("declined", func(t *testing.T) {
		obs := &rerouteObs{recObs: &recObs{}, decline: true, errs: make(chan error, 4)}
		f := startFast(t, &rerouteRouter{first: Call{Pool: believing}, obs: obs})
		resps, _, _ := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: w\r\n\r\n", 1, "GET")
		pe := resps[0].Header.Get("Conduit-Proxy-Error")
		if resps[0].StatusCode != http.StatusBadGateway || !strings.Contains(pe, "peer refused it unprocessed: inbound: connect") {
			t.Errorf("%d %q, want 502 with Refused's error", resps[0].StatusCode, pe)
		}
	})
}

// TestServerMarksUnsent: with Call.MarkUnsent, the error answering a
// request that was not sent upstream carries netx.HeaderUnsent; one that
// was sent, or without MarkUnsent, does not.
func TestServerMarksUnsent(t *testing.T) {
	dead := closedPort(t)
	mute := mutePeer(t)
	for _, tt := range []struct {
		name string
		call Call
		want bool
	}{
		{"not sent, marked", Call{Pool: poolTo(dead), MarkUnsent: true}, true},
		{"not sent, not marked", Call{Pool: poolTo(dead)}, false},
		{"sent, then failed", Call{Pool: poolTo(mute), MarkUnsent: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := startFast(t, &rerouteRouter{first: tt.call, obs: &rerouteObs{recObs: &recObs{}, decline: true, errs: make(chan error, 4)}})
			resps, _, _ := rawExchange(t, f.addr, "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 2\r\n\r\nhi", 1, "POST")
			_, got := resps[0].Header[netx.HeaderUnsent]
			if resps[0].StatusCode != http.StatusBadGateway || got != tt.want {
				t.Errorf("%d, marked %v; want 502, marked %v", resps[0].StatusCode, got, tt.want)
			}
		})
	}
}
