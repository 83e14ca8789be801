package h2

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestClientAnnouncesTrailersOnce: a request's trailer fields are announced
// once each, in the trailer fields of its HEADERS. A request from this
// package's server (the inbound HTTP/2 fast path) has the names in its
// Trailer header and as r.Trailer's keys; both were sent, so that the
// application saw every name twice.
func TestClientAnnouncesTrailersOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		header  []string    // the request's Trailer header
		trailer http.Header // r.Trailer
		want    []string    // the names announced, sorted
	}{
		{"Trailer header and r.Trailer", []string{"X-T"}, http.Header{"X-T": {"v"}}, []string{"x-t"}},
		{"Trailer header naming two and r.Trailer", []string{"X-T, X-U"}, http.Header{"X-T": {"v"}, "X-U": {"w"}}, []string{"x-t", "x-u"}},
		{"r.Trailer only", nil, http.Header{"X-T": {"v"}, "X-U": {"w"}}, []string{"x-t", "x-u"}},
		{"Trailer header only", []string{"X-T"}, nil, []string{"x-t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var announced []string
			dec := hpack.NewDecoder(4096, nil)
			addr := serveScript(t, nil, func(fr *http2.Framer, f http2.Frame) {
				var end bool
				switch f := f.(type) {
				case *http2.HeadersFrame:
					fields, err := dec.DecodeFull(f.HeaderBlockFragment())
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for _, hf := range fields {
						if hf.Name == "trailer" && f.StreamEnded() {
							t.Errorf("trailer field %q among the trailers", hf.Value)
						}
						if hf.Name == "trailer" {
							for n := range strings.SplitSeq(hf.Value, ",") {
								announced = append(announced, strings.ToLower(strings.TrimSpace(n)))
							}
						}
					}
					mu.Unlock()
					end = f.StreamEnded()
				case *http2.DataFrame:
					end = f.StreamEnded()
				}
				if end {
					var buf strings.Builder
					enc := hpack.NewEncoder(&buf)
					_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.Header().StreamID, EndHeaders: true, EndStream: true, BlockFragment: []byte(buf.String())})
				}
			})
			cl := clientTo(t, addr)
			req, _ := http.NewRequest(http.MethodPost, "http://svc/", strings.NewReader("body"))
			if tc.header != nil {
				req.Header["Trailer"] = tc.header
			}
			req.Trailer = tc.trailer
			resp, err := cl.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			slices.Sort(announced)
			if !slices.Equal(announced, tc.want) {
				t.Errorf("announced %q, want %q", announced, tc.want)
			}
		})
	}
}

// TestClientNoTrailerAllocs: a request without trailers announces none, and
// its header fields are encoded without an allocation.
func TestClientNoTrailerAllocs(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	req.Header["Content-Type"] = []string{"text/plain"}
	fields, trailers := 0, 0
	enc := func(name, _ string) {
		fields++
		if name == "trailer" {
			trailers++
		}
	}
	n := testing.AllocsPerRun(100, func() { encodeRequestHeader(req, enc) })
	if n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
	if fields == 0 || trailers != 0 {
		t.Errorf("%d fields, %d of them trailer; want some, none", fields, trailers)
	}
}
