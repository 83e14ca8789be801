package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/conduit-mesh/conduit/pkg/grpcecho"
)

// leakRounds is how many times TestNoGoroutineLeft repeats its exchanges:
// a goroutine left behind by one of them is left that many times, far
// above what the proxies' pools and the clients' connections vary by.
const leakRounds = 12

// TestNoGoroutineLeft: the exchanges that end early or badly (a client
// that cancels a response it is reading, a response the application cuts
// short, a request its client times out while the application holds it, an
// upload its client abandons, a protocol switch closed by its client, gRPC
// calls cancelled or past their deadline, a gRPC stream cancelled) leave
// no goroutine behind in either proxy, in any relay mode and for HTTP/1.1
// and h2c clients; nor do opaque connections closed or reset by either
// end. A sidecar runs for the life of its pod: a goroutine left per failed
// request is memory that grows until the pod is restarted.
func TestNoGoroutineLeft(t *testing.T) {
	grpcApp := grpc.NewServer()
	grpcecho.Register(grpcApp, "web-0")
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			grpcApp.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/ok":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "ok %d", len(b))
		case "/stream":
			// Chunks until the client goes.
			for r.Context().Err() == nil {
				_, _ = w.Write(bytes.Repeat([]byte("x"), 1024))
				w.(http.Flusher).Flush()
				time.Sleep(5 * time.Millisecond)
			}
		case "/cut":
			w.Header().Set("Content-Length", "4096")
			_, _ = w.Write([]byte("part"))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/hold":
			<-r.Context().Done()
		case "/upload":
			_, _ = io.Copy(io.Discard, r.Body)
		case "/up":
			echoSwitched(w, nil)
		}
	})
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			m := newMesh(t)
			client, _ := m.twoProxies(t, startHandler(t, app), mode.env)
			out := client.OutboundAddr().String()
			h1, h2c := h1Client(out), h2cClient(out)
			g := grpcConn(t, out)
			noneLeft(t, func(t *testing.T) {
				for _, c := range []relayClient{{"HTTP/1.1", h1}, {"h2c", h2c}} {
					leakExchanges(t, c)
				}
				conn, _ := switchProtocols(t, out, "web", "")
				conn.Close()
				leakGRPC(t, g)
				h1.CloseIdleConnections()
				h2c.CloseIdleConnections()
			})
		})
	}
	t.Run("opaque", func(t *testing.T) {
		m := newMesh(t)
		client, _ := m.opaquePair(t, serveTCP(t, func(c net.Conn) {
			b := make([]byte, 5)
			n, _ := c.Read(b)
			switch string(b[:n]) {
			case "reset":
				_ = c.(*net.TCPConn).SetLinger(0)
			case "half!":
				_, _ = io.Copy(io.Discard, c)
				_, _ = io.WriteString(c, "bye")
			default:
				_, _ = c.Write(b[:n])
				_, _ = io.Copy(c, c)
			}
		}), "10.9.9.12:3306")
		out := client.OutboundAddr().String()
		noneLeft(t, func(t *testing.T) { leakOpaque(t, out) })
	})
}

// noneLeft runs exchanges once (the connections and pools a first
// exchange opens stay, and are no leak), then leakRounds times, and fails
// if a kind of goroutine grew by half of leakRounds or more meanwhile.
func noneLeft(t *testing.T, exchanges func(t *testing.T)) {
	t.Helper()
	exchanges(t)
	time.Sleep(500 * time.Millisecond) // what the warm-up ended is still ending
	before, _ := goroutineKinds()
	for range leakRounds {
		exchanges(t)
	}
	if grown := waitGoroutines(t, before); len(grown) > 0 {
		t.Fatalf("after %d rounds, goroutines left behind:\n%s", leakRounds, strings.Join(grown, "\n\n"))
	}
}

// leakOpaque opens, through the client proxy's opaque port at out, one of
// each connection TestNoGoroutineLeft checks: closed by its client after an
// echo, closed before a byte, reset by the application, and half-closed
// by its client and answered.
func leakOpaque(t *testing.T, out string) {
	t.Helper()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", out)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	c := dial()
	buf := make([]byte, 5)
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	c.Close()
	dial().Close()
	c = dial()
	_, _ = io.WriteString(c, "reset")
	if _, err := c.Read(buf); err == nil {
		t.Fatalf("a connection its application reset read %q", buf)
	}
	c.Close()
	c = dial()
	_, _ = io.WriteString(c, "half!")
	_ = c.(*net.TCPConn).CloseWrite()
	if b, err := io.ReadAll(c); err != nil || string(b) != "bye" {
		t.Fatalf("after a half-close: %q, %v; want bye", b, err)
	}
	c.Close()
}

// leakExchanges makes, through c, one of each exchange TestNoGoroutineLeft
// checks, and checks that each ended as it should.
func leakExchanges(t *testing.T, c relayClient) {
	t.Helper()
	do := func(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://web"+path, body)
		if err != nil {
			t.Fatal(err)
		}
		return c.c.Do(req)
	}
	// A request that succeeds, with a body.
	resp, err := do(t.Context(), http.MethodPost, "/ok", strings.NewReader(strings.Repeat("a", 64<<10)))
	if err != nil {
		t.Fatalf("%s /ok: %v", c.name, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok 65536" {
		t.Fatalf("%s /ok: %q", c.name, b)
	}
	// A response its client cancels while reading it.
	ctx, cancel := context.WithCancel(t.Context())
	resp, err = do(ctx, http.MethodGet, "/stream", nil)
	if err != nil {
		t.Fatalf("%s /stream: %v", c.name, err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 2048)); err != nil {
		t.Fatalf("%s /stream: %v", c.name, err)
	}
	cancel()
	resp.Body.Close()
	// A response the application cuts short: the client sees it fail, by
	// a body that ends in an error or (net/http's HTTP/2 server, which
	// holds a fixed-length response's head with its body, resets the
	// stream before it) by the client proxy's 502.
	resp, err = do(t.Context(), http.MethodGet, "/cut", nil)
	if err == nil {
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != http.StatusBadGateway || resp.Header.Get("conduit-proxy-error") == "") {
			t.Fatalf("%s /cut: read whole: %s %q", c.name, resp.Status, b)
		}
	}
	// A request the application holds until its client times out.
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Millisecond)
	_, err = do(ctx, http.MethodGet, "/hold", nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s /hold: %v, want the client's deadline", c.name, err)
	}
	// An upload its client abandons half-way.
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(make([]byte, 16<<10))
		time.Sleep(10 * time.Millisecond)
		pw.CloseWithError(errors.New("client gave up"))
	}()
	resp, err = do(t.Context(), http.MethodPost, "/upload", pr)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// leakGRPC makes, on conn, the gRPC calls TestNoGoroutineLeft checks: one
// its client cancels and one past its deadline while the application holds
// them, and a full-duplex stream cancelled after its first echo.
func leakGRPC(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	if err := grpcecho.CancelHeld(t.Context(), conn, 10*time.Second, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), grpcecho.HoldKey, "10s"), 30*time.Millisecond)
	_, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("held call with a deadline: %v, want DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	st, err := testgrpc.NewTestServiceClient(conn).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := st.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled stream: %v, want Canceled", err)
	}
}

// waitGoroutines returns, once the process's goroutines have settled (or
// after 15 s), those of each kind (see goroutineKinds) whose number grew by
// half of leakRounds or more over before, each with its count and a stack.
func waitGoroutines(t *testing.T, before map[string]int) []string {
	t.Helper()
	var grown []string
	for deadline := time.Now().Add(15 * time.Second); ; {
		counts, stacks := goroutineKinds()
		grown = grown[:0]
		for k, n := range counts {
			if n-before[k] >= leakRounds/2 {
				grown = append(grown, fmt.Sprintf("%d more (%d before):\n%s", n-before[k], before[k], stacks[k]))
			}
		}
		if len(grown) == 0 || time.Now().After(deadline) {
			sort.Strings(grown)
			return grown
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// goroutineKinds counts the process's goroutines by kind (the functions on
// their stacks, and the one that created them) and keeps a stack of each.
func goroutineKinds() (counts map[string]int, stacks map[string]string) {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	counts, stacks = map[string]int{}, map[string]string{}
	for _, g := range strings.Split(buf.String(), "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		var fns []string
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "\t") {
				continue // file:line
			}
			if c, ok := strings.CutPrefix(l, "created by "); ok {
				c, _, _ = strings.Cut(c, " in goroutine")
				fns = append(fns, "created by "+c)
			} else if i := strings.LastIndex(l, "("); i > 0 {
				fns = append(fns, l[:i]) // without the arguments
			}
		}
		k := strings.Join(fns, " < ")
		counts[k]++
		stacks[k] = g
	}
	return counts, stacks
}
