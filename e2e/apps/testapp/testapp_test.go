package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/conduit-mesh/conduit/pkg/grpcecho"
)

func TestEchoHandler(t *testing.T) {
	srv := httptest.NewServer(echoHandler("web-0", "shop", slog.New(slog.DiscardHandler)))
	defer srv.Close()
	tests := []struct {
		name       string
		path       string
		header     map[string]string
		wantStatus int
		wantPath   string
		// wantAttempt is X-Testapp-Attempt, also the echo's attempt.
		wantAttempt string
	}{
		{name: "echoes pod and headers", path: "/hello?x=1", header: map[string]string{"Conduit-Client-Id": "a.b"}, wantStatus: 200, wantPath: "/hello?x=1"},
		{name: "status code", path: "/status/503", wantStatus: 503, wantPath: "/status/503"},
		{name: "bad status code", path: "/status/99", wantStatus: 400},
		{name: "bad delay", path: "/?delay=soon", wantStatus: 400},
		{name: "delay", path: "/?delay=10ms", wantStatus: 200, wantPath: "/?delay=10ms"},
		// The rows run in order against one server: a key's count carries over.
		{name: "fail-first: first of key a fails", path: "/?fail-first=2&key=a", wantStatus: 503},
		{name: "fail-first: second of key a fails", path: "/?fail-first=2&key=a", wantStatus: 503},
		{name: "fail-first: key b counts apart", path: "/?fail-first=1&key=b", wantStatus: 503},
		{name: "fail-first: third of key a succeeds", path: "/?fail-first=2&key=a", wantStatus: 200, wantPath: "/?fail-first=2&key=a", wantAttempt: "3"},
		{name: "bad fail-first", path: "/?fail-first=-1", wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantPath == "" {
				return
			}
			var e Echo
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if e.Pod != "web-0" || e.Namespace != "shop" || e.Path != tt.wantPath || e.Method != "GET" {
				t.Errorf("echo = %+v", e)
			}
			for k, v := range tt.header {
				if got := strings.Join(e.Headers[k], ","); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if got := resp.Header.Get("X-Testapp-Attempt"); got != tt.wantAttempt || (got != "" && strconv.Itoa(e.Attempt) != got) {
				t.Errorf("attempt: header %q, echo %d, want %q", got, e.Attempt, tt.wantAttempt)
			}
			if resp.Header.Get("X-Testapp-Pod") != "web-0" {
				t.Errorf("X-Testapp-Pod = %q", resp.Header.Get("X-Testapp-Pod"))
			}
		})
	}
}

func TestGetCommand(t *testing.T) {
	srv := httptest.NewServer(echoHandler("web-0", "", slog.New(slog.DiscardHandler)))
	defer srv.Close()
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
	}{
		{name: "sends headers", args: []string{"-H", "Conduit-Client-Id: spoofed", srv.URL + "/x"}, wantOut: `"Conduit-Client-Id":["spoofed"]`},
		{name: "repeats", args: []string{"-n", "3", "-new-conn", srv.URL}, wantOut: `"pod":"web-0"`},
		{name: "summary with interval", args: []string{"-summary", "-n", "3", "-interval", "10ms", srv.URL}, wantOut: "3 ok\n"},
		{name: "fails on 5xx", args: []string{srv.URL + "/status/500"}, wantErr: "status 500"},
		{name: "expected status", args: []string{"-expect-status", "404", srv.URL + "/status/404"}},
		{name: "unexpected status", args: []string{"-expect-status", "404", srv.URL}, wantErr: "status 200"},
		{name: "bad header", args: []string{"-H", "nocolon", srv.URL}, wantErr: "want 'Key: value'"},
		{name: "no url", args: nil, wantErr: "usage"},
		{name: "no server", args: []string{"-timeout", "1s", "http://127.0.0.1:1/"}, wantErr: "GET"},
		{name: "expected body", args: []string{"-expect-body", `"pod":"web-0"`, srv.URL}, wantOut: `"pod":"web-0"`},
		{name: "unexpected body", args: []string{"-expect-body", "nope", srv.URL}, wantErr: `lacks "nope"`},
		{name: "no limit without a stop", args: []string{"-n", "0", srv.URL}, wantErr: "usage"},
		{name: "prints heads", args: []string{"-print-head", srv.URL}, wantOut: `{"status":200,"proto":"HTTP/1.1","contentLength":`},
		{name: "HEAD with its length", args: []string{"-X", "HEAD", "-print-head", srv.URL + "/x"}, wantOut: `"Content-Length":["`},
		// A head sent before the body is written: no length to tell.
		{name: "HEAD without a length", args: []string{"-X", "HEAD", "-print-head", srv.URL + "/x?body-delay=10ms"}, wantOut: `"contentLength":-1,`},
		{name: "bad method", args: []string{"-X", "GE T", srv.URL}, wantErr: "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := getCmd(context.Background(), tt.args, nil, &out, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "summary with interval" && out.String() != tt.wantOut {
				t.Errorf("summary output %q, want only %q", out.String(), tt.wantOut)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output %q does not contain %q", out.String(), tt.wantOut)
			}
			if n := strings.Count(out.String(), `"pod"`); tt.args[0] == "-n" && n != 3 {
				t.Errorf("%d answers, want 3", n)
			}
		})
	}
}

func TestTCPEchoAndLookup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Setenv("POD_NAME", "db-1")
	go tcpEcho(ctx, ln, slog.New(slog.DiscardHandler), echoAddr{})
	var out bytes.Buffer
	if err := tcpCmd(ctx, []string{ln.Addr().String(), "ping"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "db-1 ping from 127.0.0.1\n"; out.String() != want {
		t.Errorf("tcp answer %q, want %q", out.String(), want)
	}
	// A client waiting for a banner from a server that never speaks first
	// fails within the banner's time, naming the cause.
	out.Reset()
	start := time.Now()
	err = tcpCmd(ctx, []string{"-banner", "200ms", ln.Addr().String(), "ping"}, &out)
	if err == nil || !strings.Contains(err.Error(), "no banner") {
		t.Errorf("banner from a client-speaks-first server: err = %v, want no banner", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waited %v for a banner of 200ms", d)
	}

	// A server-speaks-first echo greets before it reads.
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go tcpEcho(ctx, bl, slog.New(slog.DiscardHandler), echoAddr{banner: true})
	out.Reset()
	if err := tcpCmd(ctx, []string{"-banner", "2s", bl.Addr().String(), "ping"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "db-1 banner for 127.0.0.1\ndb-1 ping from 127.0.0.1\n"; out.String() != want {
		t.Errorf("banner exchange %q, want %q", out.String(), want)
	}
	out.Reset()
	if err := lookupCmd(ctx, []string{"localhost"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "127.0.0.1") && !strings.Contains(out.String(), "::1") {
		t.Errorf("lookup localhost = %q", out.String())
	}
	t.Setenv("TESTAPP_PROBE", "a b=c")
	out.Reset()
	if err := run(ctx, slog.New(slog.DiscardHandler), []string{"env"}, stdio{out: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\nTESTAPP_PROBE=a b=c\n") && !strings.HasPrefix(out.String(), "TESTAPP_PROBE=a b=c\n") {
		t.Errorf("env output lacks TESTAPP_PROBE:\n%s", out.String())
	}
	if err := run(ctx, slog.New(slog.DiscardHandler), []string{"nope"}, stdio{out: io.Discard}); err != errUsage {
		t.Errorf("unknown command: err = %v, want usage", err)
	}
}

func TestServeShutsDownOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveCmd(ctx, slog.New(slog.DiscardHandler), []string{"-addr", "127.0.0.1:0", "-tcp-addr", "127.0.0.1:0"})
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after cancel")
	}
}

func TestGetLoadGenerator(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Testapp-Pod", "web-0")
		w.Header().Set("X-Testapp-Upstream-Pod", "server-0")
		fmt.Fprintln(w, "fine")
	}))
	defer srv.Close()

	t.Run("duration", func(t *testing.T) {
		var out bytes.Buffer
		start := time.Now()
		err := getCmd(context.Background(), []string{"-n", "0", "-duration", "200ms", "-interval", "10ms", "-summary", "-stats", srv.URL}, nil, &out, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
			t.Errorf("ran %s, want about 200ms", d)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var ok int
		if len(lines) != 4 {
			t.Fatalf("output %q, want 4 lines", out.String())
		}
		if _, err := fmt.Sscanf(lines[0], "%d ok", &ok); err != nil || ok < 5 || strings.Contains(lines[0], "failed") {
			t.Errorf("summary %q, want at least 5 ok", lines[0])
		}
		if !strings.HasPrefix(lines[1], "latency p50=") {
			t.Errorf("latency line %q", lines[1])
		}
		if want := fmt.Sprintf("pods server-0=%d web-0=%d", ok, ok); lines[2] != want {
			t.Errorf("pods line %q, want %q", lines[2], want)
		}
		if lines[3] != "connections 1" {
			t.Errorf("connections line %q, want %q (keep-alive)", lines[3], "connections 1")
		}
	})

	t.Run("until stdin closes", func(t *testing.T) {
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		var out bytes.Buffer
		go func() {
			done <- getCmd(context.Background(), []string{"-n", "0", "-until-eof", "-interval", "5ms", "-summary", srv.URL}, pr, &out, io.Discard)
		}()
		time.Sleep(100 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("stopped before stdin closed: %v", err)
		default:
		}
		pw.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("still running 5s after stdin closed")
		}
		if !strings.HasSuffix(out.String(), " ok\n") || strings.HasPrefix(out.String(), "0 ok") {
			t.Errorf("summary %q", out.String())
		}
	})

	t.Run("keep going counts failures", func(t *testing.T) {
		var out, errOut bytes.Buffer
		var calls atomic.Int32
		flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1)%2 == 0 {
				http.Error(w, "boom", http.StatusBadGateway)
				return
			}
			fmt.Fprintln(w, "fine")
		}))
		defer flaky.Close()
		err := getCmd(context.Background(), []string{"-n", "6", "-keep-going", "-summary", flaky.URL}, nil, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "3 of 6 requests failed") {
			t.Fatalf("err = %v, want 3 of 6 failed", err)
		}
		if out.String() != "3 ok, 3 failed\n" {
			t.Errorf("summary %q", out.String())
		}
		if n := strings.Count(errOut.String(), "status 502: boom"); n != 3 {
			t.Errorf("stderr names %d failures, want 3:\n%s", n, errOut.String())
		}
	})

	t.Run("a proxy's error is named", func(t *testing.T) {
		proxyErr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Conduit-Proxy-Error", "outbound: connect 10.0.0.9:8080: connection refused")
			w.WriteHeader(http.StatusBadGateway)
		}))
		defer proxyErr.Close()
		err := getCmd(context.Background(), []string{"-summary", proxyErr.URL}, nil, io.Discard, io.Discard)
		if want := "status 502 (conduit-proxy-error: outbound: connect 10.0.0.9:8080: connection refused)"; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want it to contain %q", err, want)
		}
		// How long the answer took, for a test to tell a refusal after a
		// timeout from an immediate one.
		if m := regexp.MustCompile(`\(after [0-9.]+[mµn]?s\)$`); !m.MatchString(err.Error()) {
			t.Errorf("err = %v, want it to end with how long the answer took", err)
		}
	})

	t.Run("stops at the first failure without keep-going", func(t *testing.T) {
		fail.Store(true)
		defer fail.Store(false)
		err := getCmd(context.Background(), []string{"-n", "0", "-duration", "10s", "-summary", srv.URL}, nil, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "request 1: status 503") {
			t.Fatalf("err = %v, want request 1 to fail with 503", err)
		}
	})
}

func TestServeUpstream(t *testing.T) {
	server := httptest.NewServer(echoHandler("server-0", "shop", slog.New(slog.DiscardHandler)))
	defer server.Close()
	web := httptest.NewServer(newHandler(handlerConfig{pod: "web-0", namespace: "shop", log: slog.New(slog.DiscardHandler), upstream: server.URL, client: http.DefaultClient}))
	defer web.Close()

	resp, err := http.Get(web.URL + "/x?y=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e Echo
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || e.Pod != "web-0" || e.Upstream == nil || e.Upstream.Pod != "server-0" || e.Upstream.Path != "/x?y=1" {
		t.Fatalf("status %d, echo %+v (upstream %+v)", resp.StatusCode, e, e.Upstream)
	}
	if resp.Header.Get("X-Testapp-Upstream-Pod") != "server-0" || resp.Header.Get("X-Testapp-Pod") != "web-0" {
		t.Errorf("headers %v", resp.Header)
	}

	// The upstream's status is passed on; an unreachable upstream is a 502.
	resp, err = http.Get(web.URL + "/status/503")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("status %d, want the upstream's 503", resp.StatusCode)
	}
	// A proxy's error answer (no echo) is named in web's 502.
	proxyErr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Conduit-Proxy-Error", "inbound: dial 127.0.0.1:8080: connection refused")
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer proxyErr.Close()
	web2 := httptest.NewServer(newHandler(handlerConfig{pod: "web-0", namespace: "shop", log: slog.New(slog.DiscardHandler), upstream: proxyErr.URL, client: http.DefaultClient}))
	defer web2.Close()
	resp, err = http.Get(web2.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "status 502 (conduit-proxy-error: inbound: dial 127.0.0.1:8080: connection refused), not an echo"; resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), want) {
		t.Errorf("status %d %q, want 502 with %q", resp.StatusCode, b, want)
	}

	server.Close()
	resp, err = http.Get(web.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "testapp: upstream:") {
		t.Errorf("status %d %q, want 502 naming the upstream", resp.StatusCode, b)
	}
}

// TestServeDrain: on cancel (SIGTERM) with -drain, /healthz fails at once,
// requests are still served for the drain period, then the server stops.
func TestServeDrain(t *testing.T) {
	addr, cancel, done := startServe(t, "-drain", "500ms")
	get := func(path string) (int, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	cancel()
	stopped := time.Now()
	time.Sleep(50 * time.Millisecond)
	if code, err := get("/healthz"); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("draining: /healthz = %d, %v; want 503", code, err)
	}
	// A new connection is still served while draining.
	http.DefaultClient.CloseIdleConnections()
	if code, err := get("/"); err != nil || code != 200 {
		t.Errorf("draining: / = %d, %v; want 200", code, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(stopped); d < 500*time.Millisecond {
			t.Errorf("stopped %s after cancel, want after the 500ms drain", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after the drain")
	}
	if _, err := get("/"); err == nil {
		t.Error("still serving after the drain")
	}
}

// TestGRPCEcho runs the grpc command against serve's gRPC echo: a
// full-duplex stream of echoed messages with its trailer, and an error
// status on a unary call; then with a quiet stream.
func TestGRPCEcho(t *testing.T) {
	t.Setenv("POD_NAME", "grpc-0")
	ln, stop := startGRPC(t)
	var out bytes.Buffer
	if err := grpcCmd(t.Context(), []string{"-n", "5", "-size", "70000", "-timeout", "10s", ln.Addr().String()}, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out.String()), "5 ok pod=grpc-0 client-id="; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	// Then a stream held without a message, on a channel with keepalive.
	out.Reset()
	if err := grpcCmd(t.Context(), []string{"-n", "1", "-keepalive", "10s", "-quiet", "300ms", "-timeout", "10s", ln.Addr().String()}, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out.String()), "1 ok pod=grpc-0 client-id=\nquiet 300ms ok"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	stop()
	// Nothing listening: the command fails instead of hanging.
	if err := grpcCmd(t.Context(), []string{"-timeout", "2s", ln.Addr().String()}, io.Discard); err == nil {
		t.Error("grpc against a closed port succeeded")
	}
}

// TestGRPCQuietFails: a server that closes the connection while the stream
// is quiet (here at its maximum connection age) fails the grpc command,
// which names the channel's state changes.
func TestGRPCQuietFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 500 * time.Millisecond, MaxConnectionAgeGrace: 100 * time.Millisecond}))
	grpcecho.Register(srv, "grpc-0")
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	err = grpcCmd(t.Context(), []string{"-n", "1", "-unary-size", "16", "-quiet", "2s", "-timeout", "10s", ln.Addr().String()}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "left READY") {
		t.Errorf("grpc with the connection closed under a quiet stream: %v, want the channel's state changes", err)
	}
}

// TestAbandonedCount: a delayed request whose client goes first is counted
// by /abandoned.
func TestAbandonedCount(t *testing.T) {
	srv := httptest.NewServer(echoHandler("web-0", "shop", slog.New(slog.DiscardHandler)))
	defer srv.Close()
	c := &http.Client{Timeout: 100 * time.Millisecond}
	if resp, err := c.Get(srv.URL + "/?delay=10s"); err == nil {
		resp.Body.Close()
		t.Fatal("a 10 s delay answered within 100 ms")
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(srv.URL + "/abandoned")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(b)) == "1" {
			return
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("/abandoned: %q, want 1", b)
		}
	}
}

// TestWebSocket: ws echoes through /ws and closes (1000); with -hold it
// waits for the server's close frame, which closeAll sends (1001, going
// away), and it fails when the connection is lost without one.
func TestWebSocket(t *testing.T) {
	hub := newWSHub("web-0", slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(newHandler(handlerConfig{pod: "web-0", log: slog.New(slog.DiscardHandler), ws: hub}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	open := func() int {
		resp, err := http.Get(srv.URL + "/websockets")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	waitOpen := func(want int) {
		t.Helper()
		for start := time.Now(); open() != want; time.Sleep(10 * time.Millisecond) {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("/websockets: %d, want %d", open(), want)
			}
		}
	}

	var out strings.Builder
	if err := wsCmd(t.Context(), []string{"-n", "3", url}, &out); err != nil {
		t.Fatalf("ws: %v (printed %q)", err, out.String())
	}
	if want := "hello pod=web-0 client-id=\n3 ok\n"; out.String() != want {
		t.Errorf("ws printed %q, want %q", out.String(), want)
	}
	waitOpen(0)

	for _, tc := range []struct {
		name string
		end  func()
		want string // in the output, or the error
	}{
		{"the server closes cleanly", func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			hub.closeAll(ctx)
		}, "closed by the server after"},
		{"the connection is lost", func() {
			hub.mu.Lock()
			for c := range hub.conns {
				_ = c.NetConn().Close()
			}
			hub.mu.Unlock()
		}, "connection lost without a close frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			done := make(chan error, 1)
			go func() { done <- wsCmd(t.Context(), []string{"-n", "0", "-hold", "10s", url}, &out) }()
			waitOpen(1)
			tc.end()
			err := <-done
			got := out.String()
			if err != nil {
				got += err.Error()
			}
			if !strings.Contains(got, tc.want) || (err == nil) != (tc.name == "the server closes cleanly") {
				t.Fatalf("ws -hold: %q (err %v), want %q", out.String(), err, tc.want)
			}
			if err == nil && !strings.Contains(got, ": 1001 server stopping") {
				t.Errorf("ws -hold printed %q, want the code 1001 and its reason", got)
			}
			waitOpen(0)
		})
	}
}

// serveEcho serves the echo handler over HTTP/1.1 and h2c on a loopback
// port until the test ends, and returns its address.
func serveEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: echoHandler("web-0", "", slog.New(slog.DiscardHandler)), Protocols: protos}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestGetTrailers: get -T sends a chunked POST whose trailers the echo
// reports (announced ones included), over HTTP/1.1 and with -h2c over
// HTTP/2.
func TestGetTrailers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := serveEcho(t)
	for _, tc := range []struct {
		args  []string
		proto string
	}{{nil, "HTTP/1.1"}, {[]string{"-h2c"}, "HTTP/2.0"}} {
		var out bytes.Buffer
		args := append(append([]string{"-T", "X-Sum: 1", "-T", "X-Other: a"}, tc.args...), "http://"+addr+"/t")
		if err := getCmd(ctx, args, nil, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		var e Echo
		if err := json.Unmarshal(out.Bytes(), &e); err != nil {
			t.Fatalf("%s: %v", out.String(), err)
		}
		if e.Proto != tc.proto || e.Method != http.MethodPost || e.BodyBytes != 5 {
			t.Errorf("%v: %s %s with %d bytes of body, want POST %s with 5", tc.args, e.Method, e.Proto, e.BodyBytes, tc.proto)
		}
		if got := e.Trailers["X-Sum"]; len(got) != 1 || got[0] != "1" {
			t.Errorf("%v: trailers %v, want X-Sum: 1", tc.args, e.Trailers)
		}
	}
}

// TestGetEarlyUpload: get -early-upload has its answer from a server that
// answers before reading the body (?early=1, which then closes), and,
// from one that reads the body first, fails at its timeout rather than
// waiting for a body it never sends, over HTTP/1.1 and h2c.
func TestGetEarlyUpload(t *testing.T) {
	base := "http://" + serveEcho(t)
	for _, proto := range [][]string{nil, {"-h2c"}} {
		var out bytes.Buffer
		args := append(append([]string{"-early-upload", "8388608", "-expect-status", "413"}, proto...), base+"/status/413?early=1")
		if err := getCmd(context.Background(), args, nil, &out, io.Discard); err != nil {
			t.Fatalf("%v: %v", proto, err)
		}
		var e Echo
		if err := json.Unmarshal(out.Bytes(), &e); err != nil || e.Method != http.MethodPut || e.BodyBytes != 0 {
			t.Fatalf("%v: %s, %v; want the echo of a PUT whose body was not read", proto, out.String(), err)
		}
		start := time.Now()
		args = append(append([]string{"-early-upload", "8388608", "-timeout", "500ms"}, proto...), base+"/status/413")
		err := getCmd(context.Background(), args, nil, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "Client.Timeout exceeded") || time.Since(start) > 5*time.Second {
			t.Fatalf("%v: %v after %v, want the client's timeout", proto, err, time.Since(start))
		}
	}
}

// TestTCPResetEcho: the reset echo answers, then resets the connection
// once the client has ended its side.
func TestTCPResetEcho(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go tcpEcho(ctx, ln, slog.New(slog.DiscardHandler), echoAddr{reset: true})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 64)
	n, err := c.Read(line)
	if err != nil || !strings.Contains(string(line[:n]), " ping from ") {
		t.Fatalf("read %q, %v; want the echo", line[:n], err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadAll(c); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("after the half-close: %v, want a reset", err)
	}
}

// TestGetCountsConnections: get -stats counts the connections it opened,
// which is how an e2e test shows that a run of requests went on one
// keep-alive connection: one with keep-alive (HTTP/1.1 or h2c), one per
// request with -new-conn or when the server closes each connection.
func TestGetCountsConnections(t *testing.T) {
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := httptest.NewUnstartedServer(echoHandler("web-0", "", slog.New(slog.DiscardHandler)))
	srv.Config.Protocols = protos
	srv.Start()
	defer srv.Close()
	closing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Header().Set("X-Testapp-Pod", "web-1")
		fmt.Fprintln(w, "bye")
	}))
	defer closing.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string // the end of the output
	}{
		{"keep-alive", []string{"-n", "5", srv.URL}, "pods web-0=5\nconnections 1"},
		{"keep-alive h2c", []string{"-h2c", "-n", "4", srv.URL}, "pods web-0=4\nconnections 1"},
		{"a new connection per request", []string{"-new-conn", "-n", "3", srv.URL}, "pods web-0=3\nconnections 3"},
		{"the server closes each connection", []string{"-n", "3", closing.URL}, "pods web-1=3\nconnections 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := getCmd(t.Context(), append([]string{"-summary", "-stats"}, tc.args...), nil, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(out.String()); !strings.HasSuffix(got, "\n"+tc.want) {
				t.Errorf("output %q, want it to end with %q", got, tc.want)
			}
		})
	}
}

// TestServeDelay: serve -delay holds every echo answer, and only those:
// the probe and the test hooks answer at once, so that a slow pod stays
// Ready. A client that goes first is counted by /abandoned.
func TestServeDelay(t *testing.T) {
	if err := serveCmd(t.Context(), slog.New(slog.DiscardHandler), []string{"-delay", "-1s"}); err != errUsage {
		t.Errorf("serve -delay -1s: %v, want usage", err)
	}
	addr, cancel, done := startServe(t, "-delay", "1m")
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	get := func(path string, timeout time.Duration) (string, error) {
		c := &http.Client{Timeout: timeout}
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b)), err
	}
	// A delay far above the clients' timeouts: a delayed path times out
	// (300 ms), one that is not answers (5 s to spare for a busy machine).
	for _, tc := range []struct {
		path    string
		delayed bool
	}{
		{"/", true},
		{"/x?y=1", true},
		{"/status/503", true},
		{"/healthz", false},
		{"/websockets", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			timeout := 5 * time.Second
			if tc.delayed {
				timeout = 300 * time.Millisecond
			}
			_, err := get(tc.path, timeout)
			if delayed := err != nil; delayed != tc.delayed {
				t.Errorf("GET %s: err = %v, want delayed %v", tc.path, err, tc.delayed)
			}
		})
	}
	// The three delayed requests, whose clients gave up, are counted.
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		n, err := get("/abandoned", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if n == "3" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("/abandoned: %s, want 3", n)
		}
	}

	// A short delay is waited out, before ?delay=.
	short := httptest.NewServer(newHandler(handlerConfig{pod: "slow-0", log: slog.New(slog.DiscardHandler), delay: 50 * time.Millisecond}))
	defer short.Close()
	for _, tc := range []struct {
		path string
		min  time.Duration
	}{{"/", 50 * time.Millisecond}, {"/?delay=50ms", 100 * time.Millisecond}} {
		start := time.Now()
		resp, err := http.Get(short.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if took := time.Since(start); resp.StatusCode != 200 || resp.Header.Get("X-Testapp-Pod") != "slow-0" || took < tc.min {
			t.Errorf("GET %s: status %d from %q after %v, want 200 from slow-0 after at least %v", tc.path, resp.StatusCode, resp.Header.Get("X-Testapp-Pod"), took, tc.min)
		}
	}
}

// TestGRPCCalls: grpc -calls makes its unary calls on one channel and
// prints, as one JSON line, the pod that answered each, the client
// identity each saw, and the connections the channel opened.
func TestGRPCCalls(t *testing.T) {
	t.Setenv("POD_NAME", "grpc-0")
	ln, stop := startGRPC(t)
	defer stop()
	var out bytes.Buffer
	if err := grpcCmd(t.Context(), []string{"-calls", "7", "-size", "10", "-timeout", "10s", ln.Addr().String()}, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), `{"calls":7,"pods":{"grpc-0":7},"clientIds":{"":7},"connections":1}`+"\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	for _, args := range [][]string{{"-calls", "-1", ln.Addr().String()}, {"-calls", "3"}} {
		if err := grpcCmd(t.Context(), args, io.Discard); err != errUsage {
			t.Errorf("grpc %v: %v, want usage", args, err)
		}
	}
}

// TestBodyDelay: ?body-delay=D sends the head at once and the body D
// later (with ?length=1, announced in Content-Length); get -header-timeout
// waits for heads only, so it passes against a late body and fails
// against a late head.
func TestBodyDelay(t *testing.T) {
	srv := httptest.NewServer(echoHandler("web-0", "shop", slog.New(slog.DiscardHandler)))
	defer srv.Close()
	for _, path := range []string{"/?body-delay=400ms", "/?body-delay=400ms&length=1"} {
		start := time.Now()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		head := time.Since(start)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !strings.Contains(string(body), `"pod":"web-0"`) {
			t.Fatalf("%s: body %q, %v", path, body, err)
		}
		if head > 300*time.Millisecond || time.Since(start) < 400*time.Millisecond {
			t.Errorf("%s: head after %v, body after %v; want the head at once, the body 400 ms later", path, head, time.Since(start))
		}
		if want := strings.Contains(path, "length"); (resp.ContentLength > 0) != want {
			t.Errorf("%s: ContentLength %d, want announced %v", path, resp.ContentLength, want)
		}
	}
	if code := getStatus(t, srv.URL+"/?body-delay=soon"); code != http.StatusBadRequest {
		t.Errorf("bad body-delay: status %d, want 400", code)
	}

	var out, errOut strings.Builder
	if err := getCmd(t.Context(), []string{"-header-timeout", "200ms", srv.URL + "/?body-delay=500ms"}, nil, &out, &errOut); err != nil {
		t.Errorf("get -header-timeout 200ms, body 500 ms late: %v (%s)", err, errOut.String())
	}
	if err := getCmd(t.Context(), []string{"-header-timeout", "200ms", srv.URL + "/?delay=500ms"}, nil, &out, &errOut); err == nil {
		t.Error("get -header-timeout 200ms, head 500 ms late: no error")
	}
	if err := getCmd(t.Context(), []string{"-header-timeout", "-1s", srv.URL}, nil, &out, &errOut); err != errUsage {
		t.Errorf("get -header-timeout -1s: %v, want usage", err)
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startServe runs serveCmd with args on a free loopback port until cancel
// is called, and waits for its /healthz; done yields serveCmd's result.
func startServe(t *testing.T, args ...string) (addr string, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- serveCmd(ctx, slog.New(slog.DiscardHandler), append([]string{"-addr", addr}, args...))
	}()
	c := &http.Client{Timeout: time.Second}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if resp, err := c.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 5*time.Second {
			cancel()
			t.Fatal("server not up")
		}
	}
	return addr, cancel, errc
}

// startGRPC serves the gRPC echo (serveGRPC) on a loopback listener; stop
// ends it and checks that it stopped cleanly.
func startGRPC(t *testing.T) (ln net.Listener, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	srv := grpc.NewServer()
	grpcecho.Register(srv, "grpc-0")
	go func() { done <- serveGRPC(ctx, srv, ln, slog.New(slog.DiscardHandler)) }()
	return ln, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveGRPC after cancel: %v", err)
		}
	}
}

// TestGRPCCancelCounted: testapp grpc -cancel-after cancels a held call,
// and the serving testapp's /abandoned counts it (its gRPC echo shares the
// count with the HTTP server); a call not held long enough to be cancelled
// fails grpc -cancel-after and is not counted.
func TestGRPCCancelCounted(t *testing.T) {
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := gl.Addr().String()
	gl.Close()
	addr, cancel, done := startServe(t, "-grpc-addr", grpcAddr)
	defer func() { cancel(); <-done }()
	abandoned := func() string {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/abandoned")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	var out bytes.Buffer
	if err := grpcCmd(t.Context(), []string{"-hold", "10ms", "-cancel-after", "5s", grpcAddr}, &out); err == nil || !strings.Contains(err.Error(), "answered") {
		t.Fatalf("grpc -hold 10ms -cancel-after 5s: %v, want an error saying the call was answered", err)
	}
	if got := abandoned(); got != "0" {
		t.Fatalf("/abandoned after an answered call: %s, want 0", got)
	}
	out.Reset()
	if err := grpcCmd(t.Context(), []string{"-cancel-after", "100ms", grpcAddr}, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "cancelled after 100ms\n" {
		t.Errorf("grpc -cancel-after 100ms printed %q", got)
	}
	for start := time.Now(); abandoned() != "1"; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("/abandoned: %s, want 1 after a cancelled call", abandoned())
		}
	}
}

// TestCutShort: ?cut=N sends a head and N bytes, then ends the response
// short (with &length=1 its Content-Length announces 2N); get -read-delay
// reads the body that much after the head and names, on the failed read,
// how many bytes it got.
func TestCutShort(t *testing.T) {
	srv := httptest.NewServer(echoHandler("web-0", "shop", slog.New(slog.DiscardHandler)))
	defer srv.Close()
	for _, path := range []string{"/?cut=100000", "/?cut=100000&length=1", "/?cut=0"} {
		var out, errOut strings.Builder
		start := time.Now()
		err := getCmd(t.Context(), []string{"-read-delay", "300ms", srv.URL + path}, nil, &out, &errOut)
		want := "after 100000 bytes"
		if strings.Contains(path, "cut=0") {
			want = "after 0 bytes"
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "status 200") {
			t.Errorf("get %s: %v; want a failed read (status 200) %s", path, err, want)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("get -read-delay 300ms: done after %v", d)
		}
	}
	for _, bad := range []string{"-1", "x", "67108865"} {
		if code := getStatus(t, srv.URL+"/?cut="+bad); code != http.StatusBadRequest {
			t.Errorf("cut=%s: status %d, want 400", bad, code)
		}
	}
	var out, errOut strings.Builder
	if err := getCmd(t.Context(), []string{"-read-delay", "-1s", srv.URL}, nil, &out, &errOut); err != errUsage {
		t.Errorf("get -read-delay -1s: %v, want usage", err)
	}
}

// TestEarlyHints: ?hints=1 sends a 103 Early Hints with its Link before
// the echo; get -expect-early-hints passes with it and fails without.
func TestEarlyHints(t *testing.T) {
	srv := httptest.NewServer(echoHandler("web-0", "shop", slog.New(slog.DiscardHandler)))
	defer srv.Close()
	var out, errOut strings.Builder
	if err := getCmd(t.Context(), []string{"-expect-early-hints", srv.URL + "/?hints=1"}, nil, &out, &errOut); err != nil {
		t.Errorf("get -expect-early-hints /?hints=1: %v", err)
	}
	if !strings.Contains(out.String(), `"pod":"web-0"`) {
		t.Errorf("no echo after the hints: %q", out.String())
	}
	if err := getCmd(t.Context(), []string{"-expect-early-hints", srv.URL + "/"}, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "no 103 Early Hints") {
		t.Errorf("get -expect-early-hints / (no hints sent): %v, want a failure", err)
	}
}
