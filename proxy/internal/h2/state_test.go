package h2

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestServerTrailersAfterReset: trailers the client sent before it learnt
// that the server reset (or refused) its stream are ignored (RFC 9113 5.1:
// frames on a stream closed by our RST_STREAM MUST be ignored); they do not
// end the connection and every other stream on it.
func TestServerTrailersAfterReset(t *testing.T) {
	post := func(path string, kv ...string) []string {
		return append([]string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", path}, kv...)
	}
	for _, tc := range []struct {
		name   string
		fields []string
		code   http2.ErrCode // the server's RST_STREAM of stream 1
	}{
		{"refused by the handler", post("/refuse"), http2.ErrCodeRefusedStream},
		{"answered before the body ended", post("/answer"), http2.ErrCodeNo},
		{"body longer than its content-length", post("/read", "content-length", "1"), http2.ErrCodeProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := make(chan struct{}, 1)
			srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
				switch r.URL.Path {
				case "/refuse":
					return nil, ErrRefuse
				case "/read":
					_, _ = io.Copy(io.Discard, r.Body)
				case "/next":
					next <- struct{}{}
				}
				return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
			})}
			fr, resets := rawClient(t, srv)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: headerBlock(tc.fields...)})
			_ = fr.WriteData(1, false, []byte("abc"))
			wantReset(t, resets, tc.code)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock("x-checksum", "1")})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true,
				BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/next")})
			select {
			case <-next:
			case rst, ok := <-resets:
				t.Fatalf("the next stream got RST_STREAM %v (connection open %v), want it served", rst.code, ok)
			case <-time.After(5 * time.Second):
				t.Fatal("the next stream on the connection was not served")
			}
		})
	}
}

// TestServerHeadersAfterRequestEnd: HEADERS on a stream whose request
// ended (half-closed remote) is a stream error STREAM_CLOSED (RFC 9113
// 5.1), and the connection goes on.
func TestServerHeadersAfterRequestEnd(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 1)
	srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		started <- struct{}{}
		<-release
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})}
	fr, resets := rawClient(t, srv)
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(getFields...)})
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not start")
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock("x-late", "1")})
	wantReset(t, resets, http2.ErrCodeStreamClosed)
}

// TestServerConnectionErrors: frames that leave the connection's state
// unknown end it with GOAWAY and the code RFC 9113 gives, so the peer
// learns why.
func TestServerConnectionErrors(t *testing.T) {
	req := headerBlock(getFields...)
	for _, tc := range []struct {
		name  string
		write func(fr *http2.Framer)
		code  http2.ErrCode
	}{
		{"even stream ID from a client", func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, EndHeaders: true, EndStream: true, BlockFragment: req})
		}, http2.ErrCodeProtocol}, // 5.1.1
		// The frames before the one in error leave the server nothing to
		// write but its own control frames: a response being written would
		// race the GOAWAY to the connection's close.
		{"request on a stream ID below the last", func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true,
				BlockFragment: headerBlock(":method", "CONNECT", ":authority", "x:443")}) // refused: stream 3 opened
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: req})
		}, http2.ErrCodeProtocol}, // 5.1.1
		{"HEADERS padding longer than the frame", func(fr *http2.Framer) {
			// The header block was never decoded: HPACK is out of step
			// with the peer (6.2: a connection error).
			payload := append([]byte{255}, req...)
			_ = fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPadded|http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 1, payload)
		}, http2.ErrCodeProtocol},
		{"frame above SETTINGS_MAX_FRAME_SIZE", func(fr *http2.Framer) {
			_ = fr.WriteData(1, true, bytes.Repeat([]byte("a"), maxFrame+1))
		}, http2.ErrCodeFrameSize}, // 4.2
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantGoAway(tc.code)(t, serverFrames(t, okServer(), tc.write))
		})
	}
}

// TestServerMalformedTrailers: a trailer section RFC 9113 8.2.2 and 8.1
// forbid resets the stream with PROTOCOL_ERROR, and the handler reading
// the body gets an error instead of the fields.
func TestServerMalformedTrailers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []string
	}{
		{"connection-specific field", []string{"transfer-encoding", "chunked"}},
		{"upgrade", []string{"upgrade", "websocket"}},
		{"pseudo-header", []string{":path", "/other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := make(chan error, 1)
			srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
				_, err := io.ReadAll(r.Body)
				read <- err
				return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
			})}
			fr, resets := rawClient(t, srv)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
				BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/", "trailer", tc.fields[0])})
			_ = fr.WriteData(1, false, []byte("abc"))
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: headerBlock(tc.fields...)})
			select {
			case err := <-read:
				if err == nil {
					t.Error("the handler read the body to EOF, the trailers taken")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the handler's body read is still waiting")
			}
			wantReset(t, resets, http2.ErrCodeProtocol)
		})
	}
}

// TestSettingsRepeatedWindowSize: a SETTINGS frame may repeat
// INITIAL_WINDOW_SIZE thousands of times; the last value holds for every
// open stream, and the reader does not walk the streams once per repeat
// (1,000 streams and 500 full frames: 1.4 billion stream updates).
func TestSettingsRepeatedWindowSize(t *testing.T) {
	const streams, frames = 1000, 500
	var in bytes.Buffer
	wfr := http2.NewFramer(&in, nil)
	settings := make([]http2.Setting, maxFrame/6)
	for i := range frames {
		for j := range settings {
			settings[j] = http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(1000*(i+1) + j)}
		}
		if err := wfr.WriteSettings(settings...); err != nil {
			t.Fatal(err)
		}
	}
	var c conn
	c.init(&bufConn{}, &in, DefaultWriteTimeout)
	for id := uint32(1); id < 2*streams; id += 2 {
		s := c.newStream(id)
		s.sendOff = int64(id) // what it sent or was given since it opened
		c.streams[id] = s
	}
	start := time.Now()
	for range frames {
		f, err := c.rfr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.onSettings(f.(*http2.SettingsFrame), nil); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	last := int64(1000*frames + len(settings) - 1)
	for id, s := range c.streams {
		if got, want := c.sendWin(s), last+int64(id); got != want {
			t.Fatalf("stream %d: send window %d, want %d (the last INITIAL_WINDOW_SIZE and what the stream moved since)", id, got, want)
		}
	}
	if elapsed > time.Second {
		t.Errorf("%d SETTINGS frames with %d streams open took %v, want well under a second", frames, streams, elapsed)
	}
}
