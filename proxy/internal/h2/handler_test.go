package h2

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHandlerNoResponse: a handler that returns neither a response nor an
// error is answered 500 with conduit-proxy-error, logged once however
// often it happens, and the connection goes on. (writeResponse took the nil
// response's fields: the panic ended the process.)
func TestHandlerNoResponse(t *testing.T) {
	var logs bytes.Buffer
	srv := &Server{
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path == "/ok" {
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
			}
			return nil, nil
		}),
	}
	get := func(path string) []string {
		return []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", path}
	}
	fs := serverFrames(t, srv, func(fr *http2.Framer) {
		for i, path := range []string{"/nil", "/nil", "/ok"} {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), EndHeaders: true, EndStream: true, BlockFragment: headerBlock(get(path)...)})
		}
	})
	want := map[uint32]string{1: "500", 3: "500", 5: "200"}
	for _, f := range fs {
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			status := f.PseudoValue("status")
			if status != want[f.StreamID] {
				t.Errorf("stream %d: status %s, want %s", f.StreamID, status, want[f.StreamID])
			}
			if status == "500" && headerValue(f, "conduit-proxy-error") == "" {
				t.Errorf("stream %d: 500 without conduit-proxy-error", f.StreamID)
			}
			delete(want, f.StreamID)
		case *http2.GoAwayFrame:
			t.Errorf("GOAWAY %v, want the connection to go on", f.ErrCode)
		case *http2.RSTStreamFrame:
			t.Errorf("stream %d reset %v, want a response", f.StreamID, f.ErrCode)
		}
	}
	if len(want) > 0 {
		t.Errorf("no response on streams %v", want)
	}
	if n := strings.Count(logs.String(), "no response"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestServerRequestContext: with a ServeConn context that is never
// canceled, a request's context (the stream's own netx.AbortCtx) has its
// values, and ends when the handler returns and when the connection ends
// under a running handler.
func TestServerRequestContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ended := make(chan string, 2)
	started := make(chan struct{}, 1)
	srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		ctx := r.Context()
		if v, _ := ctx.Value(ctxKey{}).(string); v != "conn-value" || ctx.Err() != nil {
			t.Errorf("handler's context: value %q, Err %v", v, ctx.Err())
		}
		path := r.URL.Path
		context.AfterFunc(ctx, func() { ended <- path })
		if path == "/hang" {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
	})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = srv.ServeConn(context.WithValue(context.Background(), ctxKey{}, "conn-value"), c) }()
		}
	}()
	var conn atomic.Pointer[net.Conn]
	cl := &Client{Dial: func(ctx context.Context) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
		if err == nil {
			conn.Store(&c)
		}
		return c, err
	}}
	t.Cleanup(cl.CloseIdle)
	req := func(path string) *http.Request {
		r, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+path, nil)
		return r
	}
	resp, err := cl.RoundTrip(req("/ok"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case p := <-ended:
		if p != "/ok" {
			t.Fatalf("context of %s ended, want /ok's", p)
		}
	case <-time.After(wait):
		t.Fatal("the request's context did not end when its handler returned")
	}

	errc := make(chan error, 1)
	go func() {
		resp, err := cl.RoundTrip(req("/hang"))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("handler not called")
	}
	_ = (*conn.Load()).Close()
	select {
	case p := <-ended:
		if p != "/hang" {
			t.Fatalf("context of %s ended, want /hang's", p)
		}
	case <-time.After(wait):
		t.Fatal("the request's context did not end with its connection")
	}
	if err := <-errc; err == nil {
		t.Error("RoundTrip on a closed connection: no error")
	}
}
