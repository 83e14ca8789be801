package h2

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// cutBody is a response body of n bytes that then fails with err: the
// server resets the stream after its DATA.
type cutBody struct {
	left int
	err  error
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, b.err
	}
	n := min(len(p), b.left)
	for i := range p[:n] {
		p[i] = byte('a' + (b.left-i)%26)
	}
	b.left -= n
	return n, nil
}

func (b *cutBody) Close() error { return nil }

// cutPair is a Client and a Server whose every response is size bytes cut
// short by a reset (INTERNAL_ERROR).
func cutPair(t *testing.T, size int) *Client {
	t.Helper()
	return benchPair(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, ContentLength: -1, Body: &cutBody{left: size, err: errors.New("application went away")}}, nil
	}))
}

// clientConnOf returns cl's one connection.
func clientConnOf(t *testing.T, cl *Client) *clientConn {
	t.Helper()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(cl.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(cl.conns))
	}
	return cl.conns[0]
}

// waitNoStreams waits until cc has no stream open: the resets have been
// read and handled.
func waitNoStreams(t *testing.T, cc *clientConn) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		cc.mu.Lock()
		n := len(cc.streams)
		cc.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still open", n)
		}
	}
}

// TestClientDataBeforeReset: the DATA a server sent before it reset the
// stream reaches the response body's reader, then the reset, however late
// the reader comes: how much of a response cut short gets through does not
// depend on timing (net/http's client delivers it too).
func TestClientDataBeforeReset(t *testing.T) {
	for _, size := range []int{1, 40 << 10, 1 << 20} {
		cl := cutPair(t, size)
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://svc/", nil)
		resp, err := cl.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		waitNoStreams(t, clientConnOf(t, cl)) // the reset came before the reader
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(b) != size || string(b[:1]) != string(rune('a'+size%26)) {
			t.Errorf("size %d: read %d bytes", size, len(b))
		}
		if !errors.Is(err, errReset) || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
			t.Errorf("size %d: read error %v, want the server's reset (INTERNAL_ERROR)", size, err)
		}
	}
}

// TestResetDataHoldsNoConnectionWindow: data kept for a reader after the
// peer's reset has its connection window returned at once. More such
// responses than the connection window holds, never read, do not stall
// the connection; reading or closing them later returns nothing twice.
func TestResetDataHoldsNoConnectionWindow(t *testing.T) {
	const size = 1 << 20
	cl := cutPair(t, size)
	var kept []*http.Response
	for range connWindow/size + 4 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://svc/", nil)
		resp, err := cl.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, resp)
		waitNoStreams(t, clientConnOf(t, cl))
	}
	// Half read to the reset, half closed unread.
	for i, resp := range kept {
		if i%2 == 0 {
			b, err := io.ReadAll(resp.Body)
			if len(b) != size || !errors.Is(err, errReset) {
				t.Fatalf("response %d: read %d bytes, error %v", i, len(b), err)
			}
		}
		resp.Body.Close()
	}
	cc := clientConnOf(t, cl)
	cc.mu.Lock()
	window := cc.recvConn + cc.ackConn
	cc.mu.Unlock()
	if window != connWindow {
		t.Errorf("connection window left to the server plus due to it: %d, want %d (all consumed, each byte once)", window, connWindow)
	}
}

// TestServerDataBeforeReset: the request body a client sent before it
// reset the stream stays readable to the handler, then the reset; the
// request's context is done by then.
func TestServerDataBeforeReset(t *testing.T) {
	type result struct {
		body string
		err  error
	}
	read := make(chan result, 1)
	srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		<-r.Context().Done()
		b, err := io.ReadAll(r.Body)
		read <- result{string(b), err}
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})}
	fr, _ := rawClient(t, srv)
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/")})
	_ = fr.WriteData(1, false, []byte("abc"))
	_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	select {
	case r := <-read:
		if r.body != "abc" || !errors.Is(r.err, errReset) {
			t.Errorf("handler read %q, error %v; want \"abc\", then the reset", r.body, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never finished")
	}
}
