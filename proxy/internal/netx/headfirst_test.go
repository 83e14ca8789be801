package netx

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

type tellingBody struct {
	io.Reader
	block bool
}

func (b tellingBody) Close() error     { return nil }
func (b tellingBody) WouldBlock() bool { return b.block }

// TestHeadFirst: ReverseProxy is told to flush at once (ContentLength -1)
// only for a body with a length that may block; the Content-Length field
// that frames the response stays.
func TestHeadFirst(t *testing.T) {
	for _, tt := range []struct {
		name   string
		cl     int64
		header bool // the response has a Content-Length field
		body   io.ReadCloser
		wantCL int64
	}{
		{"cannot tell", 5, true, io.NopCloser(strings.NewReader("hello")), -1},
		{"cannot tell, no field", 5, false, io.NopCloser(strings.NewReader("hello")), -1},
		{"would block", 5, true, tellingBody{strings.NewReader("hello"), true}, -1},
		{"already there", 5, true, tellingBody{strings.NewReader("hello"), false}, 5},
		{"empty", 0, true, http.NoBody, 0},
		{"unknown length (flushed already)", -1, false, io.NopCloser(strings.NewReader("hello")), -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{ContentLength: tt.cl, Header: http.Header{}, Body: tt.body}
			if tt.header {
				resp.Header.Set("Content-Length", "5")
			}
			if err := HeadFirst(resp); err != nil {
				t.Fatal(err)
			}
			if resp.ContentLength != tt.wantCL {
				t.Errorf("ContentLength %d, want %d", resp.ContentLength, tt.wantCL)
			}
			if tt.cl > 0 && resp.Header.Get("Content-Length") != "5" {
				t.Errorf("Content-Length field %q, want 5", resp.Header.Get("Content-Length"))
			}
		})
	}
}

// TestMayBlock: only a body that says so, or http.NoBody, never blocks.
func TestMayBlock(t *testing.T) {
	for _, tt := range []struct {
		name string
		r    io.Reader
		want bool
	}{
		{"cannot tell", strings.NewReader("x"), true},
		{"would block", tellingBody{strings.NewReader(""), true}, true},
		{"would not", tellingBody{strings.NewReader("x"), false}, false},
		{"http.NoBody", http.NoBody, false},
	} {
		if got := MayBlock(tt.r); got != tt.want {
			t.Errorf("%s: MayBlock = %v, want %v", tt.name, got, tt.want)
		}
	}
}
