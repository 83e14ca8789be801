package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// heldBody is a request body that sends first bytes at once and then
// nothing until released (or until a generous deadline, so that a proxy
// that waits for the whole body fails the test instead of hanging it): a
// client that waits for an early answer before it sends the rest.
type heldBody struct {
	r       *io.PipeReader
	release chan struct{}
}

func newHeldBody(t *testing.T, first int) *heldBody {
	t.Helper()
	pr, pw := io.Pipe()
	b := &heldBody{r: pr, release: make(chan struct{})}
	go func() {
		_, _ = pw.Write([]byte(strings.Repeat("x", first)))
		select {
		case <-b.release:
		case <-time.After(5 * time.Second):
		}
		_ = pw.CloseWithError(errors.New("the client gave up"))
	}()
	t.Cleanup(b.done)
	return b
}

func (b *heldBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *heldBody) Close() error               { return nil }

func (b *heldBody) done() {
	select {
	case <-b.release:
	default:
		close(b.release)
	}
}

// rejecting is an upstream that answers 413 without reading the body and
// closes the connection, as a server that refuses an upload on its
// headers does (net/http's would otherwise read up to 256 KiB of a
// chunked body before it answered).
func rejecting(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	t.Cleanup(up.Close)
	return up
}

// TestPoolEarlyResponse: an upstream's answer that comes before it has
// read the request body (a 413 on an upload) is returned as it comes,
// while the client still holds the rest of its body, for a body of known
// length and a chunked one. Until 2026-12-07 the pool sent the whole body
// before it read a byte of the answer: these requests failed after the
// client gave up.
func TestPoolEarlyResponse(t *testing.T) {
	up := rejecting(t)
	pool, dials := countingPool(up.Listener.Addr().String())
	for _, length := range []int64{8 << 20, -1} {
		t.Run(map[bool]string{true: "length", false: "chunked"}[length > 0], func(t *testing.T) {
			body := newHeldBody(t, 64<<10)
			r, _ := http.NewRequest(http.MethodPut, "http://web.test/upload", body)
			r.ContentLength = length
			start := time.Now()
			resp, err := pool.RoundTrip(r)
			if err != nil {
				t.Fatalf("after %v: %v", time.Since(start), err)
			}
			select {
			case <-body.release:
				t.Fatal("the answer came only after the client gave up")
			default:
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || string(got) != "too large\n" {
				t.Fatalf("%d %q, want the upstream's 413", resp.StatusCode, got)
			}
		})
	}
	// A connection whose request body was not sent whole carries no other
	// request: each exchange dialed its own.
	if n := dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}

// TestPoolFullDuplex: an upstream that answers as it reads (an echo that
// streams) has its answer relayed while the request body is still being
// sent, line by line; once both ends are done the connection goes back to
// the pool. Sending the body first, the pool deadlocked here.
func TestPoolFullDuplex(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			fmt.Fprintf(w, "echo %s\n", sc.Text())
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(up.Close)
	pool, dials := countingPool(up.Listener.Addr().String())
	pr, pw := io.Pipe()
	r, _ := http.NewRequest(http.MethodPost, "http://web.test/echo", pr)
	type result struct {
		resp *http.Response
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := pool.RoundTrip(r)
		res <- result{resp, err}
	}()
	_, _ = io.WriteString(pw, "line 0\n")
	var got result
	select {
	case got = <-res:
	case <-time.After(5 * time.Second):
		_ = pw.CloseWithError(errors.New("the client gave up"))
		t.Fatal("no answer while the request body streams")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	br := bufio.NewReader(got.resp.Body)
	for i := range 3 {
		if i > 0 {
			_, _ = fmt.Fprintf(pw, "line %d\n", i)
		}
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("echo line %d\n", i); line != want || err != nil {
			t.Fatalf("read %q, %v; want %q", line, err, want)
		}
	}
	_ = pw.Close()
	if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil {
		t.Fatalf("after the last line: %q, %v", rest, err)
	}
	got.resp.Body.Close()
	// The body ended after the answer did: its sender returns the
	// connection to the pool, and the next request takes it.
	for deadline := time.Now().Add(5 * time.Second); pool.Idle() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection never went back to the pool")
		}
	}
	r2, _ := http.NewRequest(http.MethodPost, "http://web.test/echo", strings.NewReader("again\n"))
	resp, err := pool.RoundTrip(r2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "echo again\n" || dials.Load() != 1 {
		t.Fatalf("%q on %d connections, want %q on one", b, dials.Load(), "echo again\n")
	}
}

// TestPoolStreamedBodyReusesConnection: requests whose bodies are too
// long to go with their heads (sent on their own goroutine) leave their
// connection to the next request once both messages are complete.
func TestPoolStreamedBodyReusesConnection(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	t.Cleanup(up.Close)
	pool, dials := countingPool(up.Listener.Addr().String())
	const size = 256 << 10
	for i := range 5 {
		for deadline := time.Now().Add(5 * time.Second); i > 0 && pool.Idle() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the connection never went back to the pool")
			}
		}
		r, _ := http.NewRequest(http.MethodPost, "http://web.test/", strings.NewReader(strings.Repeat("y", size)))
		resp, err := pool.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != fmt.Sprint(size) {
			t.Fatalf("request %d: %d %q, want the upstream to have read %d bytes", i, resp.StatusCode, b, size)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials for 5 requests, want 1", n)
	}
}

// TestPoolBodyFailureEndsExchange: when the request body fails midway (its
// client went), the exchange fails at once with that cause, although the
// upstream, which waits for the rest of the body, never answers: the
// body's sender closes the connection under the read of the answer.
func TestPoolBodyFailureEndsExchange(t *testing.T) {
	up := upstream(t) // reads the whole body before it answers
	pool := poolTo(up.Listener.Addr().String())
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(make([]byte, 1024))
		_ = pw.CloseWithError(errors.New("client reset"))
	}()
	r, _ := http.NewRequest(http.MethodPut, "http://web.test/upload", pr)
	r.ContentLength = 1 << 20
	done := make(chan error, 1)
	go func() {
		resp, err := pool.RoundTrip(r)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "client reset") {
			t.Fatalf("%v, want the body's failure", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the exchange waits for an answer that cannot come")
	}
}

// TestServerForwardEarlyResponse: the fast path's own forwarding (a Pool
// call, as to the application or over HTTP/1.1 between the proxies) also
// passes an early answer on while the client holds the rest of a body too
// long to buffer, length-framed or chunked, and then closes the connection,
// whose body was not read. Until 2026-12-07 the answer waited for the body.
func TestServerForwardEarlyResponse(t *testing.T) {
	up := rejecting(t)
	f := startFast(t, &testRouter{pool: poolTo(up.Listener.Addr().String())})
	for _, c := range []struct{ name, head, first string }{
		{"length", fmt.Sprintf("Content-Length: %d\r\n", 8<<20), strings.Repeat("x", 64<<10)},
		{"chunked", "Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat("x", 64<<10))},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "PUT /upload HTTP/1.1\r\nHost: w\r\n%s\r\n%s", c.head, c.first)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer while the client holds its body: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "too large\n" || !resp.Close {
				t.Fatalf("%d %q close %v, want the upstream's 413 and Connection: close", resp.StatusCode, b, resp.Close)
			}
			if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after the answer: %v, want EOF", err)
			}
		})
	}
}
