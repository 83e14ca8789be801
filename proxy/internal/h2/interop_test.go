package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// The interop suite runs one table of cases over three pairings on loopback
// TCP with h2c prior knowledge: our Client to our Server, our Client to
// net/http's HTTP/2 server, and net/http's HTTP/2 Transport to our Server
// (net/http bundles x/net/http2; the pairings keep the name "xnet"). The same
// echo handler serves all three: as an http.RoundTripper (adapted by
// handlerRT) for our Server, and as an http.Handler (adapted by refHandler)
// for the reference server.

// wait bounds every step that could hang.
const wait = 10 * time.Second

type pairing struct {
	name                 string
	ourClient, ourServer bool
}

var pairings = []pairing{
	{"client-server", true, true},
	{"client-xnet", true, false},
	{"xnet-server", false, true},
}

// roundTripper is what the tests need of a client: ours or x/net's.
type roundTripper interface {
	http.RoundTripper
	CloseIdle()
}

type xnetClient struct{ *http.Transport }

func (x xnetClient) CloseIdle() { x.CloseIdleConnections() }

// h2cOnly is the protocol set of net/http's HTTP/2 peers here: prior
// knowledge over plain TCP.
func h2cOnly() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// env is one client and one server, connected over loopback.
type env struct {
	p      pairing
	addr   string
	client roundTripper
	dials  atomic.Int32

	shutdown  func()     // graceful shutdown of the server
	serveDone chan error // one value each time a server-side ServeConn returns
	events    chan string
	release   chan struct{} // lets /hold handlers finish
	arrived   atomic.Int32  // /barrier handlers that have started
	allIn     chan struct{} // closed when 100 /barrier handlers have started

	mu          sync.Mutex
	serverConns []net.Conn
	clientConns []net.Conn
	tap         bool         // record what clients read, in fromServer
	fromServer  bytes.Buffer // guarded by mu
}

// tapConn records the bytes a client reads from the server.
type tapConn struct {
	net.Conn
	e *env
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.e.mu.Lock()
	c.e.fromServer.Write(p[:n])
	c.e.mu.Unlock()
	return n, err
}

const barrierN = 100

// envConfig sets the idle timeouts of both ends (zero: their defaults).
type envConfig struct {
	serverIdle, clientIdle time.Duration
}

func newEnv(t *testing.T, p pairing, cfg envConfig) *env {
	t.Helper()
	e := &env{
		p:         p,
		serveDone: make(chan error, 100),
		events:    make(chan string, 1000),
		release:   make(chan struct{}),
		allIn:     make(chan struct{}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	t.Cleanup(func() {
		ln.Close()
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, c := range e.serverConns {
			c.Close()
		}
	})

	var serve func(net.Conn) error
	ctx := context.WithoutCancel(t.Context())
	if p.ourServer {
		srv := &Server{Handler: handlerRT(e.handle), IdleTimeout: cfg.serverIdle}
		e.shutdown = srv.Shutdown
		serve = func(c net.Conn) error { return srv.ServeConn(ctx, c) }
	} else {
		// net/http's server (the same HTTP/2 code as x/net's), fed the
		// accepted connections; serve returns when net/http closes one.
		var mu sync.Mutex
		done := map[net.Conn]chan struct{}{}
		cl := netx.NewChanListener(ln.Addr())
		hs := &http.Server{Handler: refHandler(e.handle), Protocols: h2cOnly(), IdleTimeout: cfg.serverIdle,
			BaseContext: func(net.Listener) context.Context { return ctx },
			ConnState: func(c net.Conn, st http.ConnState) {
				if st != http.StateClosed && st != http.StateHijacked {
					return
				}
				mu.Lock()
				if ch, ok := done[c]; ok {
					close(ch)
					delete(done, c)
				}
				mu.Unlock()
			}}
		go func() { _ = hs.Serve(cl) }()
		t.Cleanup(func() { _ = hs.Close() })
		e.shutdown = func() { _ = hs.Shutdown(context.Background()) }
		serve = func(c net.Conn) error {
			ch := make(chan struct{})
			mu.Lock()
			done[c] = ch
			mu.Unlock()
			if err := cl.Push(c); err != nil {
				return err
			}
			<-ch
			return nil
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.serverConns = append(e.serverConns, c)
			e.mu.Unlock()
			go func() {
				err := serve(c)
				c.Close()
				select {
				case e.serveDone <- err:
				default:
				}
			}()
		}
	}()

	dial := func(ctx context.Context) (net.Conn, error) {
		e.dials.Add(1)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", e.addr)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.clientConns = append(e.clientConns, c)
		if e.tap {
			return &tapConn{Conn: c, e: e}, nil
		}
		return c, nil
	}
	if p.ourClient {
		c := &Client{Dial: dial, IdleTimeout: cfg.clientIdle}
		e.client = c
	} else {
		e.client = xnetClient{&http.Transport{
			Protocols:       h2cOnly(),
			IdleConnTimeout: cfg.clientIdle,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dial(ctx)
			},
		}}
	}
	t.Cleanup(func() {
		e.client.CloseIdle()
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, c := range e.clientConns {
			c.Close()
		}
	})
	return e
}

func (e *env) event(s string) {
	select {
	case e.events <- s:
	default:
	}
}

// waitEvent fails t unless the handler reports ev within d.
func (e *env) waitEvent(t *testing.T, ev string, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case got := <-e.events:
			if got == ev {
				return
			}
			seen = append(seen, got)
		case <-timer.C:
			t.Fatalf("handler event %q not seen within %v (saw %q)", ev, d, seen)
		}
	}
}

func (e *env) waitServeDone(t *testing.T, d time.Duration, poke func()) {
	t.Helper()
	deadline := time.After(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-e.serveDone:
			return
		case <-tick.C:
			if poke != nil {
				poke()
			}
		case <-deadline:
			t.Fatalf("server-side ServeConn did not return within %v", d)
		}
	}
}

func (e *env) killServerConns() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.serverConns {
		c.Close()
	}
}

func (e *env) newReq(t *testing.T, ctx context.Context, method, path string, body io.Reader) *http.Request {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx, method, "http://"+e.addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// within runs f and fails t if it does not return within d. On failure the
// goroutine is left behind; the test's cleanup closes the connections it
// may be blocked on.
func within[T any](t *testing.T, d time.Duration, what string, f func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-timer.C:
		t.Fatalf("%s: no result within %v (hang)", what, d)
	}
	var zero T
	return zero, nil
}

func (e *env) roundTrip(t *testing.T, r *http.Request) *http.Response {
	t.Helper()
	resp, err := within(t, wait, r.Method+" "+r.URL.Path, func() (*http.Response, error) { return e.client.RoundTrip(r) })
	if err != nil {
		t.Fatalf("%s %s: RoundTrip: %v", r.Method, r.URL.Path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(t *testing.T, d time.Duration, resp *http.Response) []byte {
	t.Helper()
	b, err := within(t, d, "reading the response body", func() ([]byte, error) { return io.ReadAll(resp.Body) })
	if err != nil {
		t.Fatalf("reading the response body: %v (after %d bytes)", err, len(b))
	}
	return b
}

func wantHeader(t *testing.T, h http.Header, key string, want ...string) {
	t.Helper()
	got := h.Values(key)
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("header %s = %q, want %q", key, got, want)
	}
}

func wantStatus(t *testing.T, resp *http.Response, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status %d, want %d (headers %v)", resp.StatusCode, code, resp.Header)
	}
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

var bigData = func() []byte {
	b := make([]byte, 10<<20)
	rand.NewChaCha8([32]byte{'h', '2'}).Read(b)
	return b
}()

// ---------------------------------------------------------------------------
// The echo handler, shared by all pairings.

var hopHeaders = []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection"}

func (e *env) handle(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	switch {
	case r.URL.Path == "/error":
		return errors.New("upstream exploded")
	case r.URL.Path == "/deadline":
		return fmt.Errorf("connect upstream: %w", context.DeadlineExceeded)

	case r.URL.Path == "/hop":
		for _, k := range hopHeaders {
			w.Header().Set(k, "x")
		}
		if e.p.ourServer {
			w.Header().Set("Connection", "close")
		} // else x/net's server would take it as a request to close the connection
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Transfer-Encoding", "chunked")
		w.Header().Set("X-Kept", "yes")
		w.WriteHeader(http.StatusOK)
		_, err := io.WriteString(w, "ok")
		return err

	case r.URL.Path == "/slow":
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "hello")
		flush()
		e.event("slow-started")
		select {
		case <-ctx.Done():
			e.event("slow-cancelled")
			return ctx.Err()
		case <-time.After(wait):
			io.WriteString(w, "late")
			return nil
		}

	case r.URL.Path == "/hang":
		e.event("hang-started")
		select {
		case <-ctx.Done():
			e.event("hang-cancelled")
			return ctx.Err()
		case <-time.After(wait):
			return errors.New("hang: never cancelled")
		}

	case r.URL.Path == "/big":
		w.WriteHeader(http.StatusOK)
		chunk := bigData[:32<<10]
		for n := 0; n < 64<<20; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				e.event("big-stopped")
				return err
			}
			if ctx.Err() != nil {
				e.event("big-stopped")
				return ctx.Err()
			}
		}
		return nil

	case r.URL.Path == "/hold":
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "head ")
		flush()
		e.event("hold-started")
		select {
		case <-e.release:
			_, err := io.WriteString(w, "done")
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
			return errors.New("hold: never released")
		}

	case r.URL.Path == "/sleep":
		d, _ := time.ParseDuration(r.URL.RawQuery)
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "head ")
		flush()
		select {
		case <-time.After(d):
			_, err := io.WriteString(w, "slept")
			return err
		case <-ctx.Done():
			return ctx.Err()
		}

	case r.URL.Path == "/barrier":
		if e.arrived.Add(1) == barrierN {
			close(e.allIn)
		}
		select {
		case <-e.allIn:
			_, err := io.WriteString(w, r.URL.RawQuery)
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "only %d of %d requests arrived together", e.arrived.Load(), barrierN)
			return nil
		}
	}

	// Echo.
	h := w.Header()
	h.Set("Echo-Method", r.Method)
	h.Set("Echo-Path", r.URL.Path)
	h.Set("Echo-Query", r.URL.RawQuery)
	h.Set("Echo-Host", r.Host)
	h.Set("Echo-Proto", fmt.Sprintf("%s %d", r.Proto, r.ProtoMajor))
	h.Set("Echo-CL", strconv.FormatInt(r.ContentLength, 10))
	pseudo := 0
	for k, vv := range r.Header {
		if strings.HasPrefix(k, ":") {
			pseudo++
		}
		if strings.HasPrefix(k, "X-") {
			h["Echo-"+k] = vv
		}
	}
	h.Set("Echo-Pseudo", strconv.Itoa(pseudo))
	if r.Header.Get("X-Trailers") != "" {
		h.Set("Trailer", "Grpc-Status, Grpc-Message, Echo-Trailer")
	}
	code := http.StatusOK
	if s := r.Header.Get("X-Status"); s != "" {
		code, _ = strconv.Atoi(s)
	}
	withBody := r.Method != http.MethodHead && code != http.StatusNoContent
	if withBody && r.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	w.WriteHeader(code)
	flush()
	if withBody {
		buf := make([]byte, 16<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
				flush()
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	} else if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return err
	}
	if r.Header.Get("X-Trailers") != "" {
		h.Set("Grpc-Status", "0")
		h.Set("Grpc-Message", "ok")
		v := r.Trailer.Get("X-Req-Trailer")
		if v == "" {
			v = "<none>"
		}
		h.Set("Echo-Trailer", v)
	}
	return nil
}

// refHandler serves a handler on the reference server, answering its errors
// as our Server is specified to.
func refHandler(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &trackWriter{ResponseWriter: w}
		err := h(tw, r)
		if err == nil {
			return
		}
		if tw.wrote {
			panic(http.ErrAbortHandler) // resets the stream
		}
		code := http.StatusBadGateway
		if errors.Is(err, context.DeadlineExceeded) {
			code = http.StatusGatewayTimeout
		}
		w.Header().Set("Conduit-Proxy-Error", err.Error())
		w.WriteHeader(code)
	})
}

type trackWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackWriter) WriteHeader(code int) { w.wrote = true; w.ResponseWriter.WriteHeader(code) }
func (w *trackWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}
func (w *trackWriter) Flush() { w.wrote = true; w.ResponseWriter.(http.Flusher).Flush() }

// handlerRT adapts a handler to the http.RoundTripper our Server calls: the
// response is returned as soon as the handler writes its head, and its body
// streams through a pipe (unbuffered, so bidirectional streaming works).
// Trailers follow net/http's client convention: keys declared in
// resp.Trailer, values filled in when the body reaches EOF.
type handlerRT func(http.ResponseWriter, *http.Request) error

func (h handlerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	w := &rtWriter{hdr: http.Header{}, head: make(chan struct{}), pr: pr, pw: pw}
	errc := make(chan error, 1)
	stop := context.AfterFunc(r.Context(), func() { pr.CloseWithError(context.Cause(r.Context())) })
	go func() {
		defer stop()
		err := h(w, r)
		if w.resp == nil {
			if err != nil {
				errc <- err
				return
			}
			w.WriteHeader(http.StatusOK)
		}
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		final := http.Header{}
		for k := range w.resp.Trailer {
			final[k] = w.hdr[k]
		}
		w.body.final = final
		pw.Close()
	}()
	select {
	case <-w.head:
		return w.resp, nil
	case err := <-errc:
		return nil, err
	}
}

type rtWriter struct {
	hdr  http.Header
	head chan struct{}
	resp *http.Response
	body *rtBody
	pr   *io.PipeReader
	pw   *io.PipeWriter
}

func (w *rtWriter) Header() http.Header { return w.hdr }

func (w *rtWriter) WriteHeader(code int) {
	if w.resp != nil {
		return
	}
	h := w.hdr.Clone()
	trailer := http.Header{}
	for _, v := range h.Values("Trailer") {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				trailer[textproto.CanonicalMIMEHeaderKey(k)] = nil
			}
		}
	}
	h.Del("Trailer")
	cl := int64(-1)
	if v := h.Get("Content-Length"); v != "" {
		cl, _ = strconv.ParseInt(v, 10, 64)
	}
	w.body = &rtBody{pr: w.pr}
	w.resp = &http.Response{
		Status:        fmt.Sprintf("%d %s", code, http.StatusText(code)),
		StatusCode:    code,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		Trailer:       trailer,
		ContentLength: cl,
		Body:          w.body,
	}
	w.body.resp = w.resp
	close(w.head)
}

func (w *rtWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

func (w *rtWriter) Flush() { w.WriteHeader(http.StatusOK) }

// rtBody copies the trailers into resp.Trailer at EOF, in the reader's
// goroutine, as net/http's Transport does.
type rtBody struct {
	pr    *io.PipeReader
	resp  *http.Response
	final http.Header // set before the pipe is closed
	once  sync.Once
}

func (b *rtBody) Read(p []byte) (int, error) {
	n, err := b.pr.Read(p)
	if err == io.EOF {
		b.once.Do(func() {
			for k, v := range b.final {
				b.resp.Trailer[k] = v
			}
		})
	}
	return n, err
}

func (b *rtBody) Close() error { return b.pr.Close() }

// trailerBody sets the request's trailer values when its data runs out.
type trailerBody struct {
	r     io.Reader
	onEOF func()
	once  sync.Once
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.once.Do(b.onEOF)
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// ---------------------------------------------------------------------------
// The cases.

type interopCase struct {
	name string
	run  func(t *testing.T, e *env)
	cfg  envConfig
}

var interopCases = []interopCase{
	{"GetNoBody", testGetNoBody, envConfig{}},
	{"PostSmall", testPostSmall, envConfig{}},
	{"Post10MiB", testPost10MiB, envConfig{}},
	{"StreamUnknownLength", testStreamUnknownLength, envConfig{}},
	{"BidiStreaming", testBidiStreaming, envConfig{}},
	{"Trailers", testTrailers, envConfig{}},
	{"Head", testHead, envConfig{}},
	{"NoContent", testNoContent, envConfig{}},
	{"ConnectionHeadersDropped", testConnectionHeaders, envConfig{}},
	{"Concurrent100", testConcurrent100, envConfig{}},
	{"CancelMidResponse", testCancelMidResponse, envConfig{}},
	{"CancelBeforeHead", testCancelBeforeHead, envConfig{}},
	{"AbortMidResponse", testAbortMidResponse, envConfig{}},
	{"AbortBeforeHead", testAbortBeforeHead, envConfig{}},
	{"AbortCtxFreedAtEnd", testAbortCtxFreedAtEnd, envConfig{}},
	{"HandlerError502", testHandlerError, envConfig{}},
	{"HandlerDeadline504", testHandlerDeadline, envConfig{}},
	{"BodyClosedEarly", testBodyClosedEarly, envConfig{}},
	{"ShutdownInFlight", testShutdownInFlight, envConfig{}},
	{"ConnKilled", testConnKilled, envConfig{}},
	{"CloseIdle", testCloseIdle, envConfig{}},
	{"LargeHeaders", testLargeHeaders, envConfig{}},
	{"ServerIdleTimeout", testServerIdleTimeout, envConfig{serverIdle: 300 * time.Millisecond}},
	{"ClientIdleTimeout", testClientIdleTimeout, envConfig{clientIdle: 300 * time.Millisecond}},
}

func TestInterop(t *testing.T) {
	for _, p := range pairings {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range interopCases {
				t.Run(c.name, func(t *testing.T) {
					c.run(t, newEnv(t, p, c.cfg))
				})
			}
		})
	}
}

func testGetNoBody(t *testing.T, e *env) {
	r := e.newReq(t, t.Context(), "GET", "/echo/a%20b?x=1&y=2", nil)
	r.Host = "svc.test:8080"
	r.Header.Set("X-Foo", "bar")
	r.Header.Add("X-Multi", "a")
	r.Header.Add("X-Multi", "b")
	resp := e.roundTrip(t, r)
	wantStatus(t, resp, 200)
	if resp.ProtoMajor != 2 {
		t.Errorf("response ProtoMajor %d, want 2", resp.ProtoMajor)
	}
	wantHeader(t, resp.Header, "Echo-Method", "GET")
	wantHeader(t, resp.Header, "Echo-Path", "/echo/a b")
	wantHeader(t, resp.Header, "Echo-Query", "x=1&y=2")
	wantHeader(t, resp.Header, "Echo-Host", "svc.test:8080")
	wantHeader(t, resp.Header, "Echo-Proto", "HTTP/2.0 2")
	wantHeader(t, resp.Header, "Echo-Pseudo", "0")
	wantHeader(t, resp.Header, "Echo-X-Foo", "bar")
	wantHeader(t, resp.Header, "Echo-X-Multi", "a", "b")
	if b := readBody(t, wait, resp); len(b) != 0 {
		t.Errorf("body %q, want empty", b)
	}
}

func testPostSmall(t *testing.T, e *env) {
	const msg = "hello, h2 world"
	r := e.newReq(t, t.Context(), "POST", "/echo", strings.NewReader(msg))
	resp := e.roundTrip(t, r)
	wantStatus(t, resp, 200)
	wantHeader(t, resp.Header, "Echo-Method", "POST")
	wantHeader(t, resp.Header, "Echo-Host", e.addr)
	wantHeader(t, resp.Header, "Echo-CL", strconv.Itoa(len(msg)))
	if resp.ContentLength != -1 && resp.ContentLength != int64(len(msg)) {
		t.Errorf("response ContentLength %d, want %d or -1", resp.ContentLength, len(msg))
	}
	if b := readBody(t, wait, resp); string(b) != msg {
		t.Errorf("body %q, want %q", b, msg)
	}
}

func testPost10MiB(t *testing.T, e *env) {
	r := e.newReq(t, t.Context(), "POST", "/echo", bytes.NewReader(bigData))
	resp := e.roundTrip(t, r)
	wantStatus(t, resp, 200)
	wantHeader(t, resp.Header, "Echo-CL", strconv.Itoa(len(bigData)))
	b := readBody(t, 60*time.Second, resp)
	if len(b) != len(bigData) || sum(b) != sum(bigData) {
		t.Errorf("echoed %d bytes sha256 %s, sent %d bytes sha256 %s", len(b), sum(b), len(bigData), sum(bigData))
	}
}

func testStreamUnknownLength(t *testing.T, e *env) {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
	sent := make(chan []byte, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		var all []byte
		off := 0
		for i := 0; i < 64; i++ {
			n := 1 + rng.IntN(20000)
			chunk := bigData[off : off+n]
			off += n
			if _, err := pw.Write(chunk); err != nil {
				pw.CloseWithError(err)
				sent <- nil
				return
			}
			all = append(all, chunk...)
		}
		pw.Close()
		sent <- all
	}()
	r := e.newReq(t, t.Context(), "POST", "/echo", pr)
	r.ContentLength = -1
	resp := e.roundTrip(t, r)
	wantStatus(t, resp, 200)
	wantHeader(t, resp.Header, "Echo-CL", "-1")
	if resp.ContentLength != -1 {
		t.Errorf("response ContentLength %d, want -1", resp.ContentLength)
	}
	b := readBody(t, wait, resp)
	all := <-sent
	if all == nil || sum(b) != sum(all) {
		t.Errorf("echoed %d bytes sha256 %s, sent %d bytes sha256 %s", len(b), sum(b), len(all), sum(all))
	}
}

func testBidiStreaming(t *testing.T, e *env) {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
	r := e.newReq(t, t.Context(), "POST", "/echo", pr)
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/grpc")
	r.Header.Set("X-Trailers", "1")
	msg := func(i int) []byte {
		return fmt.Appendf(nil, "message %03d %s", i, strings.Repeat("-", 80))
	}
	type rt struct {
		resp *http.Response
		err  error
	}
	respc := make(chan rt, 1)
	go func() {
		resp, err := e.client.RoundTrip(r)
		respc <- rt{resp, err}
	}()
	if _, err := within(t, wait, "writing message 0", func() (int, error) { return pw.Write(msg(0)) }); err != nil {
		t.Fatalf("writing message 0: %v", err)
	}
	var resp *http.Response
	select {
	case res := <-respc:
		if res.err != nil {
			t.Fatalf("RoundTrip: %v", res.err)
		}
		resp = res.resp
		t.Cleanup(func() { resp.Body.Close() })
	case <-time.After(wait):
		t.Fatalf("no response head within %v while the request body is still open (buffering?)", wait)
	}
	wantStatus(t, resp, 200)
	for i := 0; i < 20; i++ {
		if i > 0 {
			if _, err := within(t, wait, fmt.Sprintf("writing message %d", i), func() (int, error) { return pw.Write(msg(i)) }); err != nil {
				t.Fatalf("writing message %d: %v", i, err)
			}
		}
		want := msg(i)
		got, err := within(t, wait, fmt.Sprintf("reading echo of message %d", i), func() ([]byte, error) {
			b := make([]byte, len(want))
			n, err := io.ReadFull(resp.Body, b)
			return b[:n], err
		})
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("round %d: read %q, %v; want %q", i, got, err, want)
		}
	}
	pw.Close()
	if rest := readBody(t, wait, resp); len(rest) != 0 {
		t.Errorf("unexpected trailing data %q", rest)
	}
	wantHeader(t, resp.Trailer, "Grpc-Status", "0")
}

func testTrailers(t *testing.T, e *env) {
	const payload = "payload before the trailers"
	r := e.newReq(t, t.Context(), "POST", "/echo", nil)
	r.Header.Set("X-Trailers", "1")
	r.Trailer = http.Header{"X-Req-Trailer": nil}
	r.Body = &trailerBody{r: strings.NewReader(payload), onEOF: func() { r.Trailer.Set("X-Req-Trailer", "end-of-body") }}
	r.ContentLength = -1
	resp := e.roundTrip(t, r)
	wantStatus(t, resp, 200)
	if b := readBody(t, wait, resp); string(b) != payload {
		t.Errorf("body %q, want %q", b, payload)
	}
	wantHeader(t, resp.Trailer, "Grpc-Status", "0")
	wantHeader(t, resp.Trailer, "Grpc-Message", "ok")
	wantHeader(t, resp.Trailer, "Echo-Trailer", "end-of-body")
	if v := resp.Header.Get("Grpc-Status"); v != "" {
		t.Errorf("trailer Grpc-Status also in the response head: %q", v)
	}
}

func testHead(t *testing.T, e *env) {
	resp := e.roundTrip(t, e.newReq(t, t.Context(), "HEAD", "/echo", nil))
	wantStatus(t, resp, 200)
	wantHeader(t, resp.Header, "Echo-Method", "HEAD")
	if b := readBody(t, wait, resp); len(b) != 0 {
		t.Errorf("HEAD body %q, want none", b)
	}
}

func testNoContent(t *testing.T, e *env) {
	r := e.newReq(t, t.Context(), "GET", "/echo", nil)
	r.Header.Set("X-Status", "204")
	resp := e.roundTrip(t, r)
	wantStatus(t, resp, 204)
	if b := readBody(t, wait, resp); len(b) != 0 {
		t.Errorf("204 body %q, want none", b)
	}
	// The connection is still good.
	resp = e.roundTrip(t, e.newReq(t, t.Context(), "POST", "/echo", strings.NewReader("x")))
	if b := readBody(t, wait, resp); string(b) != "x" {
		t.Errorf("body after 204: %q", b)
	}
}

func testConnectionHeaders(t *testing.T, e *env) {
	e.mu.Lock()
	e.tap = true
	e.mu.Unlock()
	if !e.p.ourServer {
		// x/net's server sends Keep-Alive, Upgrade and Proxy-Connection: a
		// client may take the response as malformed (RFC 9113, 8.2.2), but
		// then only that stream fails, not the connection.
		r := e.newReq(t, t.Context(), "GET", "/hop", nil)
		resp, err := within(t, wait, "GET /hop", func() (*http.Response, error) { return e.client.RoundTrip(r) })
		if err != nil {
			t.Logf("response with connection-specific headers rejected: %v", err)
		} else {
			for _, k := range hopHeaders {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("connection-specific header %s: %q in the response", k, v)
				}
			}
			readBody(t, wait, resp)
			resp.Body.Close()
		}
		resp = e.roundTrip(t, e.newReq(t, t.Context(), "POST", "/echo", strings.NewReader("next")))
		if b := readBody(t, wait, resp); string(b) != "next" {
			t.Errorf("next request's body %q", b)
		}
		if n := e.dials.Load(); n != 1 {
			t.Errorf("%d dials, want 1 (a malformed response is a stream error, not a connection error)", n)
		}
		return
	}
	resp := e.roundTrip(t, e.newReq(t, t.Context(), "GET", "/hop", nil))
	wantStatus(t, resp, 200)
	for _, k := range hopHeaders {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("connection-specific header %s: %q in the response", k, v)
		}
	}
	wantHeader(t, resp.Header, "X-Kept", "yes")
	if b := readBody(t, wait, resp); string(b) != "ok" {
		t.Errorf("body %q, want %q", b, "ok")
	}
	// Clients may drop them on receipt (x/net's does): look at the wire.
	e.mu.Lock()
	raw := bytes.Clone(e.fromServer.Bytes())
	e.mu.Unlock()
	fr := http2.NewFramer(io.Discard, bytes.NewReader(raw))
	fr.SetMaxReadFrameSize(1<<24 - 1)
	fr.ReadMetaHeaders = hpack.NewDecoder(1<<16, nil)
	sawKept := false
	for {
		f, err := fr.ReadFrame()
		if se, ok := err.(http2.StreamError); ok {
			t.Errorf("malformed header block from the server: %v", se)
			continue
		}
		if err != nil {
			break
		}
		mh, ok := f.(*http2.MetaHeadersFrame)
		if !ok {
			continue
		}
		for _, hf := range mh.Fields {
			for _, k := range hopHeaders {
				if strings.EqualFold(hf.Name, k) {
					t.Errorf("connection-specific header %s: %q sent on the wire", hf.Name, hf.Value)
				}
			}
			if hf.Name == "x-kept" {
				sawKept = true
			}
		}
	}
	if !sawKept {
		t.Errorf("x-kept not found in the %d bytes read from the server: wire capture broken", len(raw))
	}
}

func testConcurrent100(t *testing.T, e *env) {
	if !e.p.ourClient {
		// net/http's Transport may dial once per request racing for a
		// first connection; the server's multiplexing is what counts here.
		r, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+e.addr+"/warm", nil)
		resp, err := e.client.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	errc := make(chan error, barrierN)
	for i := 0; i < barrierN; i++ {
		go func() {
			errc <- func() error {
				r, err := http.NewRequestWithContext(t.Context(), "GET", fmt.Sprintf("http://%s/barrier?%d", e.addr, i), nil)
				if err != nil {
					return err
				}
				resp, err := e.client.RoundTrip(r)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				if resp.StatusCode != 200 || string(b) != strconv.Itoa(i) {
					return fmt.Errorf("request %d: %d %q", i, resp.StatusCode, b)
				}
				return nil
			}()
		}()
	}
	timeout := time.After(2 * wait)
	for i := 0; i < barrierN; i++ {
		select {
		case err := <-errc:
			if err != nil {
				t.Error(err)
			}
		case <-timeout:
			t.Fatalf("only %d of %d requests finished within %v", i, barrierN, 2*wait)
		}
	}
	if n := e.dials.Load(); n != 1 {
		t.Errorf("%d dials for %d concurrent requests, want 1", n, barrierN)
	}
}

// errTestAbort is the cause an AbortCtx is canceled with.
var errTestAbort = errors.New("test: the client went")

// cancelable returns a request context and what cancels it: package
// context's, or (abort) a netx.AbortCtx, which our Client follows without
// context.AfterFunc, and net/http's as any other context.
func cancelable(t *testing.T, abort bool) (context.Context, func()) {
	if !abort {
		return context.WithCancel(t.Context())
	}
	a := &netx.AbortCtx{}
	return a, func() { a.Cancel(errTestAbort) }
}

func testCancelMidResponse(t *testing.T, e *env) { cancelMidResponse(t, e, false) }
func testAbortMidResponse(t *testing.T, e *env)  { cancelMidResponse(t, e, true) }
func testCancelBeforeHead(t *testing.T, e *env)  { cancelBeforeHead(t, e, false) }
func testAbortBeforeHead(t *testing.T, e *env)   { cancelBeforeHead(t, e, true) }

func cancelMidResponse(t *testing.T, e *env, abort bool) {
	ctx, cancel := cancelable(t, abort)
	defer cancel()
	resp := e.roundTrip(t, e.newReq(t, ctx, "GET", "/slow", nil))
	wantStatus(t, resp, 200)
	b, err := within(t, wait, "reading the first chunk", func() ([]byte, error) {
		b := make([]byte, 5)
		n, err := io.ReadFull(resp.Body, b)
		return b[:n], err
	})
	if err != nil || string(b) != "hello" {
		t.Fatalf("first chunk %q, %v", b, err)
	}
	e.waitEvent(t, "slow-started", wait)
	cancel()
	start := time.Now()
	n, err := within(t, 3*time.Second, "body read after cancel", func() (int64, error) { return io.Copy(io.Discard, resp.Body) })
	if err == nil {
		t.Errorf("body read after cancel: %d more bytes and EOF, want an error", n)
	} else {
		t.Logf("body read after cancel: %v (after %v)", err, time.Since(start))
		if abort && e.p.ourClient && !errors.Is(err, errTestAbort) {
			t.Errorf("body read after the AbortCtx's Cancel: %v, want its cause", err)
		}
	}
	e.waitEvent(t, "slow-cancelled", 5*time.Second)
}

func cancelBeforeHead(t *testing.T, e *env, abort bool) {
	ctx, cancel := cancelable(t, abort)
	defer cancel()
	r := e.newReq(t, ctx, "GET", "/hang", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := e.client.RoundTrip(r)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	e.waitEvent(t, "hang-started", wait)
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Errorf("RoundTrip cancelled before the response head: no error")
		} else if abort && e.p.ourClient && !errors.Is(err, errTestAbort) {
			t.Errorf("RoundTrip after the AbortCtx's Cancel: %v, want its cause", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("RoundTrip did not return within 3s of its context's cancellation")
	}
	e.waitEvent(t, "hang-cancelled", 5*time.Second)
}

// testAbortCtxFreedAtEnd: a stream done both ways leaves its request's
// AbortCtx (our Client registered it), and canceling the context then
// touches nothing.
func testAbortCtxFreedAtEnd(t *testing.T, e *env) {
	a := &netx.AbortCtx{}
	resp := e.roundTrip(t, e.newReq(t, a, "POST", "/echo", strings.NewReader("hello")))
	wantStatus(t, resp, 200)
	if b := readBody(t, wait, resp); string(b) != "hello" {
		t.Errorf("body %q", b)
	}
	resp.Body.Close()
	var r abortRec
	deadline := time.Now().Add(wait)
	for !a.OnAbort(&r) { // the stream leaves it as it closes, after EOF
		if time.Now().After(deadline) {
			t.Fatal("the ended stream still holds the request's AbortCtx")
		}
		time.Sleep(time.Millisecond)
	}
	a.StopAbort(&r)
	a.Cancel(errTestAbort)
	resp = e.roundTrip(t, e.newReq(t, t.Context(), "POST", "/echo", strings.NewReader("again")))
	if b := readBody(t, wait, resp); string(b) != "again" {
		t.Errorf("next request's body %q", b)
	}
}

type abortRec struct{ n atomic.Int32 }

func (r *abortRec) Abort(error) { r.n.Add(1) }

func testHandlerError(t *testing.T, e *env) {
	testHandlerFailure(t, e, "/error", http.StatusBadGateway, "upstream exploded")
}

func testHandlerDeadline(t *testing.T, e *env) {
	testHandlerFailure(t, e, "/deadline", http.StatusGatewayTimeout, "context deadline exceeded")
}

// testHandlerFailure: a handler error at path is answered with status and
// the error's text in conduit-proxy-error.
func testHandlerFailure(t *testing.T, e *env, path string, status int, text string) {
	resp := e.roundTrip(t, e.newReq(t, t.Context(), "GET", path, nil))
	wantStatus(t, resp, status)
	if v := resp.Header.Get("Conduit-Proxy-Error"); !strings.Contains(v, text) {
		t.Errorf("conduit-proxy-error: %q, want the handler's error text %q", v, text)
	}
	readBody(t, wait, resp)
}

func testBodyClosedEarly(t *testing.T, e *env) {
	resp := e.roundTrip(t, e.newReq(t, t.Context(), "GET", "/big", nil))
	wantStatus(t, resp, 200)
	if _, err := within(t, wait, "reading 1000 bytes", func() (int, error) { return io.ReadFull(resp.Body, make([]byte, 1000)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := within(t, 3*time.Second, "closing the body early", func() (struct{}, error) { return struct{}{}, resp.Body.Close() }); err != nil {
		t.Logf("Close: %v", err)
	}
	e.waitEvent(t, "big-stopped", 5*time.Second)
	resp = e.roundTrip(t, e.newReq(t, t.Context(), "POST", "/echo", strings.NewReader("again")))
	wantStatus(t, resp, 200)
	if b := readBody(t, wait, resp); string(b) != "again" {
		t.Errorf("next request's body %q, want %q", b, "again")
	}
	if n := e.dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1 (the connection should survive a stream reset)", n)
	}
}

func testShutdownInFlight(t *testing.T, e *env) {
	resp := e.roundTrip(t, e.newReq(t, t.Context(), "GET", "/hold", nil))
	wantStatus(t, resp, 200)
	e.waitEvent(t, "hold-started", wait)
	shut := make(chan struct{})
	go func() {
		e.shutdown()
		close(shut)
	}()
	time.Sleep(100 * time.Millisecond) // let the GOAWAY go out before the stream ends
	close(e.release)
	if b := readBody(t, wait, resp); string(b) != "head done" {
		t.Errorf("in-flight response %q, want %q", b, "head done")
	}
	select {
	case <-shut:
	case <-time.After(wait):
		t.Fatalf("Shutdown did not return within %v", wait)
	}
	start := time.Now()
	e.waitServeDone(t, wait, nil)
	t.Logf("ServeConn returned %v after the in-flight response ended", time.Since(start))

	// A new request redials, or fails cleanly.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	r := e.newReq(t, ctx, "POST", "/echo", strings.NewReader("after"))
	resp2, err := within(t, wait, "RoundTrip after Shutdown", func() (*http.Response, error) { return e.client.RoundTrip(r) })
	if err != nil {
		t.Logf("RoundTrip after Shutdown failed cleanly: %v", err)
		return
	}
	defer resp2.Body.Close()
	b, err := within(t, wait, "reading the body after Shutdown", func() ([]byte, error) { return io.ReadAll(resp2.Body) })
	if err != nil {
		t.Logf("body after Shutdown failed cleanly: %v", err)
		return
	}
	if resp2.StatusCode != 200 || string(b) != "after" {
		t.Errorf("after Shutdown: %d %q", resp2.StatusCode, b)
	}
	if n := e.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2 (a request after GOAWAY must use a new connection)", n)
	}
}

func testConnKilled(t *testing.T, e *env) {
	r := e.newReq(t, t.Context(), "GET", "/hang", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := e.client.RoundTrip(r)
		if err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				err = fmt.Errorf("got a complete response (%d %q), want an error", resp.StatusCode, b)
				errc <- err
				return
			}
		}
		errc <- fmt.Errorf("ok: %w", err)
	}()
	e.waitEvent(t, "hang-started", wait)
	e.killServerConns()
	select {
	case err := <-errc:
		if !strings.HasPrefix(err.Error(), "ok: ") {
			t.Error(err)
		} else {
			t.Logf("RoundTrip on a killed connection: %v", errors.Unwrap(err))
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("RoundTrip did not fail within 5s of the connection being killed")
	}
	resp := e.roundTrip(t, e.newReq(t, t.Context(), "POST", "/echo", strings.NewReader("redialled")))
	wantStatus(t, resp, 200)
	if b := readBody(t, wait, resp); string(b) != "redialled" {
		t.Errorf("body %q", b)
	}
	if n := e.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}

func testCloseIdle(t *testing.T, e *env) {
	resp := e.roundTrip(t, e.newReq(t, t.Context(), "POST", "/echo", strings.NewReader("one")))
	if b := readBody(t, wait, resp); string(b) != "one" {
		t.Fatalf("body %q", b)
	}
	resp.Body.Close()
	e.client.CloseIdle()
	// The stream may be forgotten just after its body's EOF: call again.
	e.waitServeDone(t, 5*time.Second, e.client.CloseIdle)
	resp = e.roundTrip(t, e.newReq(t, t.Context(), "POST", "/echo", strings.NewReader("two")))
	if b := readBody(t, wait, resp); string(b) != "two" {
		t.Fatalf("body %q", b)
	}
	if n := e.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}

func testLargeHeaders(t *testing.T, e *env) {
	// Random letters barely compress: both header blocks outgrow a 16 KiB
	// frame and need CONTINUATION frames.
	rng := rand.New(rand.NewPCG(3, 4))
	big := make([]byte, 40000)
	for i := range big {
		big[i] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rng.IntN(62)]
	}
	r := e.newReq(t, t.Context(), "GET", "/echo", nil)
	r.Header.Set("X-Big", string(big))
	r.Header.Set("X-Small", "s")
	resp := e.roundTrip(t, r)
	wantStatus(t, resp, 200)
	if got := resp.Header.Get("Echo-X-Big"); got != string(big) {
		t.Errorf("echoed X-Big has %d bytes (sha256 %s), want %d (%s)", len(got), sum([]byte(got)), len(big), sum(big))
	}
	wantHeader(t, resp.Header, "Echo-X-Small", "s")
	readBody(t, wait, resp)
}

func testServerIdleTimeout(t *testing.T, e *env) { testIdleTimeout(t, e, "server") }
func testClientIdleTimeout(t *testing.T, e *env) { testIdleTimeout(t, e, "client") }

// testIdleTimeout: a stream in flight for longer than the idle timeout
// keeps the connection; once idle, the side with the short timeout (by)
// closes it, and the next request dials again.
func testIdleTimeout(t *testing.T, e *env, by string) {
	resp := e.roundTrip(t, e.newReq(t, t.Context(), "GET", "/sleep?900ms", nil))
	wantStatus(t, resp, 200)
	if b := readBody(t, wait, resp); string(b) != "head slept" {
		t.Fatalf("body %q, want %q", b, "head slept")
	}
	select {
	case <-e.serveDone:
		t.Fatalf("the connection was closed for idleness with a stream in flight")
	default:
	}
	start := time.Now()
	e.waitServeDone(t, 5*time.Second, nil)
	t.Logf("idle connection closed by the %s after %v", by, time.Since(start))
	if by == "server" {
		time.Sleep(200 * time.Millisecond) // let the client see the GOAWAY and EOF
	}
	resp = e.roundTrip(t, e.newReq(t, t.Context(), "POST", "/echo", strings.NewReader("again")))
	if b := readBody(t, wait, resp); string(b) != "again" {
		t.Errorf("body %q", b)
	}
	if n := e.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}

type ctxKey struct{}

// TestServeConnContext: a request's context derives from ServeConn's.
func TestServeConnContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithCancel(context.WithValue(t.Context(), ctxKey{}, "conn-value"))
	defer cancel()
	got := make(chan string, 1)
	cancelled := make(chan struct{})
	srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		v, _ := r.Context().Value(ctxKey{}).(string)
		got <- v
		select {
		case <-r.Context().Done():
			close(cancelled)
			return nil, r.Context().Err()
		case <-time.After(wait):
			return nil, errors.New("not cancelled")
		}
	})}
	serveDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serveDone <- err
			return
		}
		defer c.Close()
		serveDone <- srv.ServeConn(ctx, c)
	}()
	tr := &http.Transport{Protocols: h2cOnly(), DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}}
	t.Cleanup(tr.CloseIdleConnections)
	rctx, rcancel := context.WithTimeout(t.Context(), 2*wait)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", "http://"+ln.Addr().String()+"/", nil)
	rtDone := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		rtDone <- err
	}()
	select {
	case v := <-got:
		if v != "conn-value" {
			t.Errorf("request context value %q, want ServeConn's %q", v, "conn-value")
		}
	case <-time.After(wait):
		t.Fatal("handler not called")
	}
	cancel()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling ServeConn's context did not cancel the request's")
	}
	select {
	case <-rtDone:
	case <-time.After(wait):
		t.Error("RoundTrip did not return after ServeConn's context was cancelled")
	}
}
