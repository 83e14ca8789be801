package h2

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"

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
