package h2

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// serverFrames serves srv on a pipe, sends the preface, SETTINGS and
// write's frames, and returns the frames the server sent until it closed
// the connection or went quiet for half a second.
func serverFrames(t *testing.T, srv *Server, write func(fr *http2.Framer)) []http2.Frame {
	t.Helper()
	cc, sc := net.Pipe()
	defer cc.Close()
	go func() { _ = srv.ServeConn(context.Background(), sc) }()
	_ = cc.SetDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(cc, cc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	got := make(chan []http2.Frame, 1)
	var written atomic.Bool // quiet counts only once write is done (a loaded machine is slow to write)
	go func() {
		var fs []http2.Frame
		defer func() { got <- fs }()
		for {
			quiet := 500 * time.Millisecond
			if !written.Load() {
				quiet = 10 * time.Second
			}
			_ = cc.SetReadDeadline(time.Now().Add(quiet))
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				fs = append(fs, &http2.GoAwayFrame{FrameHeader: f.FrameHeader, LastStreamID: f.LastStreamID, ErrCode: f.ErrCode})
			case *http2.MetaHeadersFrame, *http2.RSTStreamFrame:
				fs = append(fs, f)
			}
		}
	}()
	if _, err := cc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	write(fr)
	written.Store(true)
	_ = cc.SetReadDeadline(time.Now().Add(500 * time.Millisecond)) // the reader's pending read
	return <-got
}

func okServer() *Server {
	return &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{"X-Path": {r.URL.Path}}, Body: http.NoBody}, nil
	})}
}

var getFields = []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/a"}

// Header blocks the reader loop decodes itself: what a request looks like
// after HPACK, and what ends the stream or the connection.
func TestServerHeaderBlocks(t *testing.T) {
	big := strings.Repeat("v", maxHeaderList/4)
	for _, tc := range []struct {
		name  string
		write func(fr *http2.Framer)
		check func(t *testing.T, fs []http2.Frame)
	}{
		{"split over CONTINUATION frames", func(fr *http2.Framer) {
			blk := headerBlock(append(getFields, "x-a", "1")...)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, BlockFragment: blk[:3]})
			_ = fr.WriteContinuation(1, false, blk[3:7])
			_ = fr.WriteContinuation(1, true, blk[7:])
		}, wantStatus200("/a")},
		{"indexed fields from an earlier block", func(fr *http2.Framer) {
			// One encoder for both blocks: the second is mostly indexes
			// into the dynamic table the first filled.
			var buf strings.Builder
			enc := hpack.NewEncoder(&buf)
			for _, id := range []uint32{1, 3} {
				buf.Reset()
				for i := 0; i < len(getFields); i += 2 {
					_ = enc.WriteField(hpack.HeaderField{Name: getFields[i], Value: getFields[i+1]})
				}
				_ = enc.WriteField(hpack.HeaderField{Name: "x-custom", Value: "kept"})
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true, BlockFragment: []byte(buf.String())})
			}
		}, func(t *testing.T, fs []http2.Frame) {
			if n := count(fs, func(f http2.Frame) bool {
				mh, ok := f.(*http2.MetaHeadersFrame)
				return ok && mh.PseudoValue("status") == "200"
			}); n != 2 {
				t.Errorf("%d responses with 200, want 2: %v", n, fs)
			}
		}},
		{"padding and priority around the block", func(fr *http2.Framer) {
			// The reader parses HEADERS in its read buffer itself: the
			// block is found between them, and the next frame after the
			// padding.
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, PadLength: 7,
				Priority: http2.PriorityParam{StreamDep: 0, Exclusive: true, Weight: 200}, BlockFragment: headerBlock(getFields...)})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true, PadLength: 1,
				BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/b")})
		}, func(t *testing.T, fs []http2.Frame) {
			paths := map[uint32]string{}
			for _, f := range fs {
				if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.PseudoValue("status") == "200" {
					for _, hf := range mh.RegularFields() {
						if hf.Name == "x-path" {
							paths[mh.StreamID] = hf.Value
						}
					}
				}
			}
			if paths[1] != "/a" || paths[3] != "/b" || len(paths) != 2 {
				t.Errorf("responses %v, want 200 with /a on stream 1 and /b on 3: %v", paths, fs)
			}
		}},
		{"HPACK that does not decode", func(fr *http2.Framer) {
			// An index far beyond the static table, with an empty dynamic one.
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: []byte{0xff, 0x7f}})
		}, wantGoAway(http2.ErrCodeCompression)},
		{"header list over the limit", func(fr *http2.Framer) {
			blk := headerBlock(append(getFields, "x-1", big, "x-2", big, "x-3", big, "x-4", big, "x-5", big)...)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, BlockFragment: blk[:16000]})
			for rest := blk[16000:]; len(rest) > 0; {
				n := min(len(rest), 16000)
				_ = fr.WriteContinuation(1, n == len(rest), rest[:n])
				rest = rest[n:]
			}
		}, func(t *testing.T, fs []http2.Frame) {
			// Either answered 431 or, the block being far over, the
			// connection closed; never a request with fields missing.
			for _, f := range fs {
				if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.PseudoValue("status") != "431" {
					t.Errorf("status %s, want 431", mh.PseudoValue("status"))
				}
			}
			if len(fs) == 0 {
				t.Error("no answer, want 431 or GOAWAY")
			}
		}},
		{"CONTINUATION for another stream", func(fr *http2.Framer) {
			blk := headerBlock(getFields...)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, BlockFragment: blk[:3]})
			_ = fr.WriteContinuation(3, true, blk[3:])
		}, wantGoAway(http2.ErrCodeProtocol)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, serverFrames(t, okServer(), tc.write))
		})
	}
}

func count(fs []http2.Frame, pred func(http2.Frame) bool) int {
	n := 0
	for _, f := range fs {
		if pred(f) {
			n++
		}
	}
	return n
}

func wantStatus200(path string) func(t *testing.T, fs []http2.Frame) {
	return func(t *testing.T, fs []http2.Frame) {
		t.Helper()
		for _, f := range fs {
			if mh, ok := f.(*http2.MetaHeadersFrame); ok {
				if mh.PseudoValue("status") != "200" || headerValue(mh, "x-path") != path {
					t.Errorf("status %s, x-path %q; want 200, %q", mh.PseudoValue("status"), headerValue(mh, "x-path"), path)
				}
				return
			}
		}
		t.Errorf("no response in %v", fs)
	}
}

func wantGoAway(code http2.ErrCode) func(t *testing.T, fs []http2.Frame) {
	return func(t *testing.T, fs []http2.Frame) {
		t.Helper()
		for _, f := range fs {
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				if ga.ErrCode != code {
					t.Errorf("GOAWAY %v, want %v", ga.ErrCode, code)
				}
				return
			}
		}
		t.Errorf("no GOAWAY in %v, want %v", fs, code)
	}
}

func headerValue(mh *http2.MetaHeadersFrame, name string) string {
	for _, f := range mh.RegularFields() {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}
