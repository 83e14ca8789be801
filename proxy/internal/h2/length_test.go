package h2

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// lengthCases are bodies against their declared content-length.
var lengthCases = []struct {
	name     string
	declared int
	body     string
	ok       bool
}{
	{"exact", 5, "01234", true},
	{"longer than declared", 5, "0123456789", false},
	{"shorter than declared", 10, "01234", false},
}

// headerBlock encodes fields as one header block.
func headerBlock(fields ...string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return buf.Bytes()
}

// TestServerContentLength: a request body that does not match its
// content-length reaches the handler as a read error, and the stream is
// reset with PROTOCOL_ERROR; a matching one is read whole.
func TestServerContentLength(t *testing.T) {
	for _, tc := range lengthCases {
		t.Run(tc.name, func(t *testing.T) {
			read := make(chan error, 1)
			srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
				b, err := io.ReadAll(r.Body)
				if err == nil && string(b) != tc.body {
					err = io.ErrUnexpectedEOF
				}
				read <- err
				return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
			})}
			fr, resets := rawClient(t, srv)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: headerBlock(
				":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/", "content-length", strconv.Itoa(tc.declared))})
			_ = fr.WriteData(1, true, []byte(tc.body))
			select {
			case err := <-read:
				if (err == nil) != tc.ok {
					t.Fatalf("handler read error %v, want ok=%v", err, tc.ok)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("handler did not finish reading")
			}
			if tc.ok {
				return
			}
			wantReset(t, resets, http2.ErrCodeProtocol)
		})
	}
}

// TestClientContentLength: a response body that does not match its
// content-length ends in a read error, not in more or fewer bytes than
// declared (an HTTP/1.1 client framed by that length would desync).
func TestClientContentLength(t *testing.T) {
	for _, tc := range lengthCases {
		t.Run(tc.name, func(t *testing.T) {
			// The response is written as soon as the request's HEADERS arrive.
			addr := serveScript(t, nil, func(fr *http2.Framer, f http2.Frame) {
				if h, ok := f.(*http2.HeadersFrame); ok {
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, EndHeaders: true,
						BlockFragment: headerBlock(":status", "200", "content-length", strconv.Itoa(tc.declared))})
					_ = fr.WriteData(h.StreamID, true, []byte(tc.body))
				}
			})
			cl := clientTo(t, addr)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://x/", nil)
			resp, err := cl.RoundTrip(req)
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && string(b) != tc.body {
					t.Fatalf("read %q, want %q", b, tc.body)
				}
			}
			if (err == nil) != tc.ok {
				t.Fatalf("error %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestServerRefusesMalformedRequests: request heads the server does not
// take are reset with PROTOCOL_ERROR before any handler runs.
func TestServerRefusesMalformedRequests(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []string
	}{
		{"no :path", []string{":method", "GET", ":scheme", "http", ":authority", "x"}},
		{"absolute :path", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "http://evil/x"}},
		{"asterisk for GET", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "*"}},
		{"CONNECT", []string{":method", "CONNECT", ":authority", "x:443"}},
		{"connection-specific field", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "connection", "close"}},
		{"te other than trailers", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "te", "gzip"}},
		{"length without a body", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "content-length", "3"}},
		// RFC 9113 8.2 and 8.3: what the header block itself may not hold.
		{"pseudo-header after a regular field", []string{":method", "GET", ":scheme", "http", "x-a", "1", ":authority", "x", ":path", "/"}},
		{"uppercase field name", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "X-Upper", "1"}},
		{"field name that is not a token", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "x a", "1"}},
		{"empty field name", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "", "1"}},
		{"field value with a line break", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "x-a", "1\r\nx-b: 2"}},
		{"unknown pseudo-header", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", ":foo", "bar"}},
		{"duplicate pseudo-header", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", ":path", "/b"}},
		{"response pseudo-header in a request", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", ":status", "200"}},
		// What would reach an HTTP/1.1 request line or framing verbatim.
		{"method that is not a token", []string{":method", "GET /admin", ":scheme", "http", ":authority", "x", ":path", "/"}},
		{"space in :path", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/?a HTTP/1.1 /admin"}},
		{"signed content-length", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "content-length", "+0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := make(chan struct{}, 1)
			srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
				called <- struct{}{}
				return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
			})}
			fr, resets := rawClient(t, srv)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(tc.fields...)})
			wantReset(t, resets, http2.ErrCodeProtocol)
			if len(called) > 0 {
				t.Error("the handler ran")
			}
		})
	}
}

// TestClientBodilessResponseLength: a response that ends with its HEADERS
// has a ContentLength of 0, but for a HEAD request, whose response tells
// the length of its GET's: its content-length, or unknown (-1), as
// net/http's transports have it. A proxy writing the response as
// HTTP/1.1 would otherwise tell a HEAD's client "Content-Length: 0", that
// the resource is empty.
func TestClientBodilessResponseLength(t *testing.T) {
	for _, tc := range []struct {
		method string
		fields []string
		want   int64
	}{
		{http.MethodHead, []string{":status", "200"}, -1},
		{http.MethodHead, []string{":status", "200", "content-length", "5000"}, 5000},
		{http.MethodGet, []string{":status", "200"}, 0},
		{http.MethodGet, []string{":status", "200", "content-length", "0"}, 0},
		{http.MethodGet, []string{":status", "204"}, 0},
	} {
		t.Run(tc.method+" "+strings.Join(tc.fields, " "), func(t *testing.T) {
			addr := serveScript(t, nil, func(fr *http2.Framer, f http2.Frame) {
				if h, ok := f.(*http2.HeadersFrame); ok {
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, EndHeaders: true, EndStream: true,
						BlockFragment: headerBlock(tc.fields...)})
				}
			})
			cl := clientTo(t, addr)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, tc.method, "http://x/", nil)
			resp, err := cl.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.ContentLength != tc.want {
				t.Errorf("ContentLength %d, want %d", resp.ContentLength, tc.want)
			}
		})
	}
}
