package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conduit-mesh/conduit/pkg/grpcecho"
	"google.golang.org/grpc"
)

// Echo is the JSON body of every answer of the HTTP server.
type Echo struct {
	Pod        string              `json:"pod"`
	Namespace  string              `json:"namespace,omitempty"`
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	Proto      string              `json:"proto"`
	RemoteAddr string              `json:"remoteAddr"`
	Headers    map[string][]string `json:"headers"`
	// Trailers are the request's trailer fields, read after its body: a
	// name announced in the Trailer header but never sent has a null value.
	Trailers map[string][]string `json:"trailers,omitempty"`
	// BodyBytes is the length of the request's body.
	BodyBytes int64 `json:"bodyBytes,omitempty"`
	// Attempt is how many requests with this ?key= the pod has seen, this
	// one included (with ?fail-first=).
	Attempt int `json:"attempt,omitempty"`
	// Upstream is the answer of the -upstream server this request was
	// passed to (serve -upstream), whose headers show what the upstream
	// received, e.g. the conduit-client-id its proxy set.
	Upstream *Echo `json:"upstream,omitempty"`
}

// podName is the name the server reports: POD_NAME, else the hostname.
func podName() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, _ := os.Hostname()
	return h
}

func echoHandler(pod, namespace string, log *slog.Logger) http.Handler {
	return newHandler(handlerConfig{pod: pod, namespace: namespace, log: log})
}

// handlerConfig is what the HTTP server's handler needs.
type handlerConfig struct {
	pod, namespace string
	log            *slog.Logger
	// upstream, when set, is the base URL every request (but /healthz) is
	// passed on to, with its path and query, through client.
	upstream string
	client   *http.Client
	// draining, when set and true, makes /healthz answer 503 (serve -drain).
	draining *atomic.Bool
	// ws serves /ws (a WebSocket echo); nil: a hub of the handler's own.
	ws *wsHub
	// delay holds every echo answer (serve -delay), not those of /healthz,
	// /ws, /websockets and /abandoned: a slow application whose probes
	// and test hooks still answer at once.
	delay time.Duration
	// alsoAbandoned, when set, counts more abandoned requests for
	// /abandoned: the gRPC echo's held calls cancelled by their client.
	alsoAbandoned func() int64
}

// counters counts requests by key.
type counters struct {
	mu sync.Mutex
	n  map[string]int
}

// next counts one more request with key and returns how many there were.
func (c *counters) next(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
	return c.n[key]
}

func newHandler(c handlerConfig) http.Handler {
	var attempts counters
	var abandoned atomic.Int64 // delayed requests whose context ended first
	mux := http.NewServeMux()
	if c.ws == nil {
		c.ws = newWSHub(c.pod, c.log)
	}
	mux.Handle("/ws", c.ws)
	mux.HandleFunc("/websockets", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, c.ws.open())
	})
	mux.HandleFunc("/abandoned", func(w http.ResponseWriter, _ *http.Request) {
		n := abandoned.Load()
		if c.alsoAbandoned != nil {
			n += c.alsoAbandoned()
		}
		fmt.Fprintln(w, n)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if c.draining != nil && c.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// wait holds r for d; false when its client went first (counted by
	// /abandoned), and nothing is to be answered.
	wait := func(r *http.Request, d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-r.Context().Done():
			abandoned.Add(1)
			c.log.Info("request abandoned by its client", "path", r.URL.RequestURI(), "err", context.Cause(r.Context()))
			return false
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if c.delay > 0 && !wait(r, c.delay) {
			return
		}
		if d := r.URL.Query().Get("delay"); d != "" && c.upstream == "" {
			delay, err := time.ParseDuration(d)
			if err != nil {
				http.Error(w, "testapp: bad delay: "+err.Error(), http.StatusBadRequest)
				return
			}
			if !wait(r, delay) {
				return
			}
		}
		if v := r.URL.Query().Get("cut"); v != "" && c.upstream == "" {
			cutShort(w, r, v, c.log)
			return
		}
		status, attempt := http.StatusOK, 0
		if code, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok && c.upstream == "" {
			n, err := strconv.Atoi(code)
			if err != nil || n < 200 || n > 599 {
				http.Error(w, "testapp: /status/<code> wants a code in 200..599", http.StatusBadRequest)
				return
			}
			status = n
		}
		if v := r.URL.Query().Get("fail-first"); v != "" && c.upstream == "" {
			// ?fail-first=N&key=K: the first N requests with key K answer
			// 503, later ones as usual (a flaky backend for retries).
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				http.Error(w, "testapp: fail-first wants a count >= 0", http.StatusBadRequest)
				return
			}
			attempt = attempts.next(r.URL.Query().Get("key"))
			w.Header().Set("X-Testapp-Attempt", strconv.Itoa(attempt))
			if attempt <= n {
				status = http.StatusServiceUnavailable
			}
		}
		var n int64
		if r.URL.Query().Get("early") != "" && c.upstream == "" {
			// ?early=1: the answer goes before a byte of the body is read,
			// and the connection closes after it, as a server refusing an
			// upload on its headers does (with /status/413, say).
			w.Header().Set("Connection", "close")
		} else {
			// The body is read to its end, so that its trailers are in r.Trailer.
			var err error
			if n, err = io.Copy(io.Discard, r.Body); err != nil {
				http.Error(w, "testapp: reading the body: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		e := Echo{
			Pod: c.pod, Namespace: c.namespace, Method: r.Method, Host: r.Host, Path: r.URL.RequestURI(),
			Proto: r.Proto, RemoteAddr: r.RemoteAddr, Headers: r.Header, Trailers: r.Trailer, BodyBytes: n, Attempt: attempt,
		}
		if c.upstream != "" {
			up, upPod, code, err := callUpstream(r, c.client, c.upstream)
			if err != nil {
				c.log.Warn("upstream", "err", err)
				http.Error(w, "testapp: upstream: "+err.Error(), http.StatusBadGateway)
				return
			}
			e.Upstream, status = up, code
			w.Header().Set("X-Testapp-Upstream-Pod", upPod)
		}
		if r.URL.Query().Get("hints") != "" && c.upstream == "" {
			// ?hints=1: a 103 Early Hints first, as a web server preloading.
			w.Header().Set("Link", earlyHint)
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Testapp-Pod", c.pod)
		// ?body-delay=D: the head goes at once (flushed), the body D later,
		// as a long poll or a slow report answers; with ?length=1 the head
		// announces the body's Content-Length.
		var bodyDelay time.Duration
		if d := r.URL.Query().Get("body-delay"); d != "" && c.upstream == "" {
			var err error
			if bodyDelay, err = time.ParseDuration(d); err != nil || bodyDelay < 0 {
				http.Error(w, "testapp: body-delay wants a duration >= 0", http.StatusBadRequest)
				return
			}
		}
		if bodyDelay > 0 {
			body, err := json.Marshal(e)
			if err != nil {
				http.Error(w, "testapp: "+err.Error(), http.StatusInternalServerError)
				return
			}
			body = append(body, '\n')
			if r.URL.Query().Get("length") != "" {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			}
			w.WriteHeader(status)
			http.NewResponseController(w).Flush()
			if !wait(r, bodyDelay) {
				return
			}
			if _, err := w.Write(body); err != nil {
				c.log.Warn("writing answer", "err", err)
			}
			return
		}
		w.WriteHeader(status)
		if err := json.NewEncoder(w).Encode(e); err != nil {
			c.log.Warn("writing answer", "err", err)
		}
	})
	return mux
}

// earlyHint is the Link of the 103 Early Hints that ?hints=1 sends.
const earlyHint = "</testapp.css>; rel=preload"

// cutShort answers ?cut=N: a 200 head, flushed, N bytes of body, flushed,
// then the handler aborts, so the response ends short (HTTP/1.1: the
// connection closes; h2c: the stream is reset), as an application that
// fails in the middle of a body. With &length=1 the head announces twice N
// bytes.
func cutShort(w http.ResponseWriter, r *http.Request, v string, log *slog.Logger) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 64<<20 {
		http.Error(w, "testapp: cut wants a byte count in 0..67108864", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.URL.Query().Get("length") != "" {
		w.Header().Set("Content-Length", strconv.Itoa(2*n))
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	chunk := bytes.Repeat([]byte{'x'}, 32<<10)
	for left := n; left > 0; left -= len(chunk) {
		if _, err := w.Write(chunk[:min(left, len(chunk))]); err != nil {
			log.Warn("writing the body to cut", "err", err)
			return
		}
	}
	_ = rc.Flush()
	log.Info("response cut short", "path", r.URL.RequestURI(), "bytes", n)
	panic(http.ErrAbortHandler)
}

// callUpstream sends GET base+<r's path and query> and returns the
// upstream's Echo, the pod that served it and its status code. A transport
// error or an answer that is not an Echo is an error (the caller answers 502).
func callUpstream(r *http.Request, client *http.Client, base string) (*Echo, string, int, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, strings.TrimSuffix(base, "/")+r.URL.RequestURI(), nil)
	if err != nil {
		return nil, "", 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", 0, err
	}
	defer resp.Body.Close()
	var up Echo
	if err := json.NewDecoder(resp.Body).Decode(&up); err != nil {
		return nil, "", 0, fmt.Errorf("GET %s: status %d%s, not an echo: %w", req.URL, resp.StatusCode, proxyError(resp.Header), err)
	}
	return &up, resp.Header.Get("X-Testapp-Pod"), resp.StatusCode, nil
}

// proxyError is " (conduit-proxy-error: <reason>)" when a Conduit proxy
// answered a request itself (it names its error in that header: which
// proxy failed, and why), else "".
func proxyError(h http.Header) string {
	if pe := h.Get("Conduit-Proxy-Error"); pe != "" {
		return " (conduit-proxy-error: " + pe + ")"
	}
	return ""
}

func serveCmd(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "HTTP listen address")
	alsoAddrs := fs.String("also-addrs", "", "comma-separated more listen addresses of the same HTTP server (e.g. [::1]:8081: an application on IPv6 loopback only)")
	resetAddr := fs.String("reset-addr", "", "listen address of a TCP echo that resets each connection (SO_LINGER 0) when the client ends its side, instead of closing it (empty: none)")
	tcpAddr := fs.String("tcp-addr", "", "TCP echo listen address (empty: none)")
	bannerAddrs := fs.String("banner-addrs", "", "comma-separated listen addresses of a server-speaks-first TCP echo, which greets each connection before reading (as MySQL or SMTP do; empty: none)")
	grpcAddr := fs.String("grpc-addr", "", "gRPC echo (grpc.testing.TestService) listen address (empty: none)")
	upstream := fs.String("upstream", "", "pass every request on to this base URL (http://server:8080) and answer with its echo inside ours")
	drain := fs.Duration("drain", 0, "on SIGTERM, fail /healthz and keep serving this long before shutting down (WebSockets are then closed with 1001, going away)")
	delay := fs.Duration("delay", 0, "hold every echo answer this long before answering (not /healthz, /ws, /websockets, /abandoned): a slow application, for latency-aware balancing")
	onStop := fs.String("on-stop", "", "on SIGTERM, after -drain, GET this URL and log the answer (\"on-stop answered\", its status and body) or the error (\"on-stop failed\"), as an application that calls another service while it stops")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *drain < 0 || *delay < 0 {
		return errUsage
	}
	if *upstream != "" && !strings.Contains(*upstream, "://") {
		*upstream = "http://" + *upstream
	}
	var draining atomic.Bool
	ws := newWSHub(podName(), log)
	hc := handlerConfig{
		pod: podName(), namespace: os.Getenv("POD_NAMESPACE"), log: log, upstream: *upstream, draining: &draining, ws: ws, delay: *delay,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}},
	}
	var grpcSrv *grpc.Server
	if *grpcAddr != "" {
		grpcSrv = grpc.NewServer()
		hc.alsoAbandoned = grpcecho.Register(grpcSrv, podName()).Abandoned
	}
	h := newHandler(hc)
	// HTTP/1.1, and HTTP/2 without TLS from a client that knows (get -h2c).
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second, Protocols: protos}
	lns := []string{*addr}
	if *alsoAddrs != "" {
		for _, a := range strings.Split(*alsoAddrs, ",") {
			lns = append(lns, strings.TrimSpace(a))
		}
	}
	var listeners []net.Listener
	for _, a := range lns {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
		listeners = append(listeners, ln)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2+len(listeners))
	// The TCP echoes stop with ctx; the HTTP server, with -drain, only later.
	var echoes []echoAddr
	if *tcpAddr != "" {
		echoes = append(echoes, echoAddr{addr: *tcpAddr})
	}
	if *bannerAddrs != "" {
		for _, a := range strings.Split(*bannerAddrs, ",") {
			echoes = append(echoes, echoAddr{addr: strings.TrimSpace(a), banner: true})
		}
	}
	if *resetAddr != "" {
		echoes = append(echoes, echoAddr{addr: *resetAddr, reset: true})
	}
	for _, e := range echoes {
		tl, err := net.Listen("tcp", e.addr)
		if err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); tcpEcho(ctx, tl, log, e) }()
		log.Info("tcp echo listening", "addr", tl.Addr().String(), "server-speaks-first", e.banner, "reset", e.reset)
	}
	if *grpcAddr != "" {
		gl, err := net.Listen("tcp", *grpcAddr)
		if err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveGRPC(ctx, grpcSrv, gl, log); err != nil {
				errs <- err
			}
		}()
	}
	for _, ln := range listeners {
		go func() { errs <- srv.Serve(ln) }()
		log.Info("http listening", "addr", ln.Addr().String(), "pod", podName(), "upstream", *upstream, "delay", delay.String())
	}
	select {
	case err := <-errs:
		return fmt.Errorf("testapp: %w", err)
	case <-ctx.Done():
	}
	if *drain > 0 {
		// What an application behind a Service does: endpoints and the
		// proxies' load balancers take a moment to learn that this pod is
		// going away, and until they have, new requests still arrive.
		draining.Store(true)
		log.Info("draining", "for", drain.String())
		select {
		case err := <-errs:
			return fmt.Errorf("testapp: %w", err)
		case <-time.After(*drain):
		}
	}
	if *onStop != "" {
		getOnStop(log, *onStop)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// net/http's Shutdown does not wait for hijacked connections: close
	// the WebSockets first, each with a close frame (1001, going away).
	closing, cancelClosing := context.WithTimeout(shutdown, 2*time.Second)
	ws.closeAll(closing)
	cancelClosing()
	err := srv.Shutdown(shutdown)
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("testapp: shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// getOnStop GETs url on a new connection and logs the outcome.
func getOnStop(log *slog.Logger, url string) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		log.Warn("on-stop failed", "url", url, "err", err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		log.Warn("on-stop failed", "url", url, "status", resp.StatusCode, "err", err)
		return
	}
	log.Info("on-stop answered", "url", url, "status", resp.StatusCode, "body", string(body))
}

// echoAddr is a TCP echo's listen address and kind.
type echoAddr struct {
	addr string
	// banner: the echo speaks first. reset: it resets each connection at
	// the client's end instead of closing it.
	banner, reset bool
}

// tcpEcho answers each line received on a connection with
// "<pod> <line> from <peer-ip>": the peer is the address the application saw,
// the client's own when the proxy was bypassed, the proxy's when it was not.
// With banner it speaks first: "<pod> banner for <peer-ip>" as soon as the
// connection is accepted, before reading anything. With reset, once the
// client has ended its side, the connection is reset (SO_LINGER 0) rather
// than closed: a server failing while its peer still reads.
func tcpEcho(ctx context.Context, ln net.Listener, log *slog.Logger, e echoAddr) {
	go func() { <-ctx.Done(); ln.Close() }()
	pod := podName()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("tcp accept", "err", err)
			}
			return
		}
		go func() {
			defer c.Close()
			peer, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			if e.banner {
				if _, err := fmt.Fprintf(c, "%s banner for %s\n", pod, peer); err != nil {
					return
				}
			}
			s := bufio.NewScanner(c)
			for s.Scan() {
				if _, err := fmt.Fprintf(c, "%s %s from %s\n", pod, s.Text(), peer); err != nil {
					return
				}
			}
			if tc, ok := c.(*net.TCPConn); ok && e.reset && s.Err() == nil {
				_ = tc.SetLinger(0)
			}
		}()
	}
}
