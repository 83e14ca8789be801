package h2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// TestServerRapidReset: a client that opens streams and resets them at
// once must not pile up handlers: past MaxConcurrentStreams running
// handlers, new streams are refused even though none is open.
func TestServerRapidReset(t *testing.T) {
	const max = 4
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	srv := &Server{MaxConcurrentStreams: max, Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		started <- struct{}{}
		<-release // a handler slow to notice the reset
		return nil, r.Context().Err()
	})}
	defer close(release)
	fr, resets := rawClient(t, srv)
	for i := range 2 * max {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
			BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/")}); err != nil {
			t.Fatal(err)
		}
		if i < max {
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatalf("stream %d: handler did not start", id)
			}
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint32
	for len(got) < max {
		select {
		case rst, ok := <-resets:
			if !ok {
				t.Fatalf("connection ended; refused %v", got)
			}
			if rst.code == http2.ErrCodeRefusedStream {
				got = append(got, rst.id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("refused streams %v, want the last %d", got, max)
		}
	}
	for i, id := range got {
		if want := uint32(2*(max+i) + 1); id != want {
			t.Errorf("refused stream %d, want %d", id, want)
		}
	}
	if n := len(started); n != 0 {
		t.Errorf("%d handlers started past the limit", n)
	}
}

// rstFrame is an RST_STREAM the server sent.
type rstFrame struct {
	id   uint32
	code http2.ErrCode
}

// rawClient serves srv on one end of a pipe and returns a framer on the
// other, the preface and SETTINGS sent. The server's RST_STREAM frames
// arrive on resets (read concurrently, net.Pipe being synchronous), which
// is closed when the connection ends.
func rawClient(t *testing.T, srv *Server) (*http2.Framer, <-chan rstFrame) {
	t.Helper()
	cc, sc := net.Pipe()
	t.Cleanup(func() { cc.Close() })
	go func() { _ = srv.ServeConn(context.Background(), sc) }()
	_ = cc.SetDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(cc, cc)
	resets := make(chan rstFrame, 100)
	go func() {
		defer close(resets)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if rst, ok := f.(*http2.RSTStreamFrame); ok {
				resets <- rstFrame{rst.StreamID, rst.ErrCode}
			}
		}
	}()
	if _, err := cc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return fr, resets
}

// wantReset waits for an RST_STREAM with code.
func wantReset(t *testing.T, resets <-chan rstFrame, code http2.ErrCode) {
	t.Helper()
	select {
	case rst, ok := <-resets:
		if !ok || rst.code != code {
			t.Errorf("RST_STREAM %v (connection open %v), want %v", rst.code, ok, code)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("no RST_STREAM, want %v", code)
	}
}

// TestServerStreamErrorEndsBody: trailers the framer rejects (a field name
// that is not lowercase) reset the stream, and the handler reading its
// body gets an error instead of waiting for a body that will not come.
func TestServerStreamErrorEndsBody(t *testing.T) {
	read := make(chan error, 1)
	srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		_, err := io.ReadAll(r.Body)
		read <- err
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})}
	fr, resets := rawClient(t, srv)
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/")})
	_ = fr.WriteData(1, false, []byte("abc"))
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock("Bad-Name", "x")})
	select {
	case err := <-read:
		if err == nil {
			t.Error("the handler read the body to EOF across a rejected trailer")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's body read is still waiting")
	}
	wantReset(t, resets, http2.ErrCodeProtocol)
}

// TestServerExpectContinue: a client that waits for 100 Continue before
// sending its body gets it when the handler starts reading, not after its
// own timeout.
func TestServerExpectContinue(t *testing.T) {
	cl := &http.Client{Transport: &http.Transport{Protocols: h2cOnly(), ExpectContinueTimeout: 5 * time.Second}}
	addr := serveLoopback(t, &Server{Handler: benchEcho{}})
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/up", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "payload" {
		t.Errorf("body %q, want the request's", body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("exchange took %v: the client waited out its 100-continue timeout", d)
	}
}

// TestServerRefuse: a handler error wrapping ErrRefuse resets the stream
// with REFUSED_STREAM. Client retries such a request on its own (once),
// then fails with an error marked netx.ErrUnsent, the request's
// small body restored for a caller to send elsewhere.
func TestServerRefuse(t *testing.T) {
	var calls atomic.Int32
	addr := serveLoopback(t, &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		return nil, fmt.Errorf("inbound: connect to the application: %w", ErrRefuse)
	})})
	cl := clientTo(t, addr)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader("payload"))
	_, err := cl.RoundTrip(req)
	if !errors.Is(err, netx.ErrUnsent) || !errors.Is(err, ErrRefused) {
		t.Fatalf("err %v, want a refused stream marked unsent", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("the handler was called %d times, want 2 (the request and one retry)", n)
	}
	if b, err := io.ReadAll(req.Body); err != nil || string(b) != "payload" {
		t.Errorf("request body after the failure: %q %v, want it restored", b, err)
	}
	// A handler error without ErrRefuse is a 502, as before.
	addr = serveLoopback(t, &Server{Handler: rtFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("upstream broke")
	})})
	cl2 := clientTo(t, addr)
	req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	resp, err := cl2.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Conduit-Proxy-Error") != "upstream broke" {
		t.Fatalf("%v %v, want a 502 naming the error", resp, err)
	}
	resp.Body.Close()
}

// TestClientUnsentLeavesBody: when no connection can be made, RoundTrip
// fails with an error marked netx.ErrUnsent and has not read the body,
// small or streaming, so that the request can go elsewhere as it is.
func TestClientUnsentLeavesBody(t *testing.T) {
	refused := errors.New("connect: connection refused")
	cl := &Client{Dial: func(context.Context) (net.Conn, error) { return nil, refused }}
	for _, tc := range []struct {
		name   string
		length int64
	}{{"small body", 7}, {"streaming body", -1}} {
		req, _ := http.NewRequest(http.MethodPost, "http://x/", io.NopCloser(strings.NewReader("payload")))
		req.ContentLength = tc.length
		_, err := cl.RoundTrip(req)
		if !errors.Is(err, netx.ErrUnsent) || !errors.Is(err, refused) {
			t.Fatalf("%s: err %v, want the dial error marked unsent", tc.name, err)
		}
		if b, err := io.ReadAll(req.Body); err != nil || string(b) != "payload" {
			t.Errorf("%s: body after the failure %q %v, want it unread", tc.name, b, err)
		}
	}
}
