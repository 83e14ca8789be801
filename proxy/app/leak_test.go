package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/pprof"
	"sort"
	"strings"
	"testing"
	"time"
)

// leakRounds is how many times TestNoGoroutineLeft repeats its exchanges:
// a goroutine left behind by one of them is left that many times, far
// above what the proxies' pools and the clients' connections vary by.
const leakRounds = 12

// TestNoGoroutineLeft: the exchanges that end early or badly (a client
// that cancels a response it is reading, a response the application cuts
// short, a request its client times out while the application holds it, an
// upload its client abandons, a protocol switch closed by its client) leave
// no goroutine behind in either proxy, in any relay mode and for HTTP/1.1
// and h2c clients. A sidecar runs for the life of its pod: a goroutine left
// per failed request is memory that grows until the pod is restarted.
func TestNoGoroutineLeft(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
			exchanges := func(t *testing.T) {
				for _, c := range []relayClient{{"HTTP/1.1", h1}, {"h2c", h2c}} {
					leakExchanges(t, c)
				}
				conn, _ := switchProtocols(t, out, "web", "")
				conn.Close()
			}
			// Warm up: the connections and pools a first exchange opens
			// stay, and are no leak.
			exchanges(t)
			closeIdle(h1, h2c)
			time.Sleep(500 * time.Millisecond) // what the warm-up ended is still ending
			before, _ := goroutineKinds()
			for range leakRounds {
				exchanges(t)
			}
			closeIdle(h1, h2c)
			if grown := waitGoroutines(t, before); len(grown) > 0 {
				t.Fatalf("after %d rounds, goroutines left behind:\n%s", leakRounds, strings.Join(grown, "\n\n"))
			}
		})
	}
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

func closeIdle(cs ...*http.Client) {
	for _, c := range cs {
		c.CloseIdleConnections()
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
