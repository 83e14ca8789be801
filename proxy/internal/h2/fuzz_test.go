package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The fuzz targets feed arbitrary bytes, after a valid preface, to a Server
// and to a Client over scripted connections, and require that ServeConn and
// RoundTrip return (with an error or not) without panicking or hanging.

// scriptConn is a net.Conn that reads first, then rest once release is
// closed, then EOF; it discards what is written (after passing it to
// onWrite). Its deadline starts 2 s after its creation.
type scriptConn struct {
	first, rest []byte
	release     chan struct{}
	onWrite     func([]byte)

	mu       sync.Mutex
	released bool
	deadline time.Time
	closed   chan struct{}
	closeMu  sync.Once
}

func newScriptConn(first, rest []byte) *scriptConn {
	return &scriptConn{
		first:    first,
		rest:     rest,
		release:  make(chan struct{}),
		closed:   make(chan struct{}),
		deadline: time.Now().Add(2 * time.Second),
	}
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		c.mu.Unlock()
		return n, nil
	}
	dl := c.deadline
	released := c.released
	c.mu.Unlock()
	if !released {
		var timeout <-chan time.Time
		if !dl.IsZero() {
			timer := time.NewTimer(time.Until(dl))
			defer timer.Stop()
			timeout = timer.C
		}
		select {
		case <-c.release:
		case <-c.closed:
			return 0, net.ErrClosed
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		c.released = true
		c.mu.Unlock()
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.deadline.IsZero() && time.Now().After(c.deadline) {
		return 0, os.ErrDeadlineExceeded
	}
	if len(c.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	dl := c.deadline
	c.mu.Unlock()
	if !dl.IsZero() && time.Now().After(dl) {
		return 0, os.ErrDeadlineExceeded
	}
	if c.onWrite != nil {
		c.onWrite(p)
	}
	return len(p), nil
}

func (c *scriptConn) Close() error {
	c.closeMu.Do(func() { close(c.closed) })
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *scriptConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }

func (c *scriptConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return nil
}
func (c *scriptConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// frames builds a frame sequence with a Framer and a fresh HPACK encoder.
type frames struct {
	buf bytes.Buffer
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

func newFrames() *frames {
	f := &frames{}
	f.fr = http2.NewFramer(&f.buf, nil)
	f.enc = hpack.NewEncoder(&f.hb)
	return f
}

func (f *frames) block(kv ...string) []byte {
	f.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		f.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(f.hb.Bytes())
}

func (f *frames) headers(stream uint32, endStream bool, kv ...string) *frames {
	f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: f.block(kv...), EndStream: endStream, EndHeaders: true})
	return f
}

func (f *frames) bytes() []byte { return bytes.Clone(f.buf.Bytes()) }

var getReq = []string{":method", "GET", ":scheme", "http", ":authority", "fuzz.test", ":path", "/"}
var postReq = []string{":method", "POST", ":scheme", "http", ":authority", "fuzz.test", ":path", "/up", "content-length", "5"}

func serverSeeds() [][]byte {
	var seeds [][]byte
	add := func(f *frames) { seeds = append(seeds, f.bytes()) }

	f := newFrames()
	f.fr.WriteSettings()
	add(f)

	f = newFrames()
	f.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	f.fr.WriteSettingsAck()
	f.headers(1, true, getReq...)
	add(f)

	f = newFrames()
	f.fr.WriteSettings()
	f.headers(1, false, postReq...)
	f.fr.WriteData(1, true, []byte("hello"))
	add(f)

	f = newFrames()
	f.fr.WriteSettings()
	f.fr.WriteWindowUpdate(0, 1<<20)
	f.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.headers(1, true, getReq...)
	f.fr.WriteWindowUpdate(1, 1<<16)
	f.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	f.headers(3, true, getReq...)
	add(f)

	// HEADERS split over a CONTINUATION.
	f = newFrames()
	f.fr.WriteSettings()
	blk := f.block(append(getReq, "x-long", strings.Repeat("v", 300))...)
	f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:10], EndStream: true})
	f.fr.WriteContinuation(1, true, blk[10:])
	add(f)

	// A request with trailers.
	f = newFrames()
	f.fr.WriteSettings()
	f.headers(1, false, ":method", "POST", ":scheme", "http", ":authority", "fuzz.test", ":path", "/grpc", "content-type", "application/grpc", "te", "trailers", "trailer", "x-t")
	f.fr.WriteData(1, false, []byte{0, 0, 0, 0, 1, 'x'})
	f.headers(1, true, "x-t", "v")
	add(f)

	// Several streams, then GOAWAY.
	f = newFrames()
	f.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
	for id := uint32(1); id <= 9; id += 2 {
		f.headers(id, id%3 == 0, getReq...)
	}
	f.fr.WriteData(1, false, []byte("unexpected body"))
	f.fr.WriteGoAway(7, http2.ErrCodeNo, []byte("bye"))
	add(f)
	return seeds
}

func FuzzServerFrames(f *testing.F) {
	for _, s := range serverSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var active atomic.Int32
		idle := make(chan struct{}, 1)
		srv := &Server{Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
			active.Add(1)
			defer func() {
				if active.Add(-1) == 0 {
					select {
					case idle <- struct{}{}:
					default:
					}
				}
			}()
			if r.Body != nil {
				io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			}
			if strings.HasPrefix(r.URL.Path, "/grpc") {
				return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/grpc"}},
					Trailer: http.Header{"Grpc-Status": {"0"}}, Body: io.NopCloser(strings.NewReader("\x00\x00\x00\x00\x00")), ContentLength: -1}, nil
			}
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2}, nil
		})}
		c := newScriptConn(append([]byte(http2.ClientPreface), data...), nil)
		close(c.release)
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(t.Context(), c) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("ServeConn did not return within 5s (conn deadline 2s, input %d bytes)", len(data))
		}
		// The connection has ended: handlers blocked on a request body must
		// be released.
		deadline := time.After(3 * time.Second)
		for active.Load() != 0 {
			select {
			case <-idle:
			case <-time.After(10 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%d handlers still blocked 3s after ServeConn returned (request body or context not released)", active.Load())
			}
		}
	})
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func clientSeeds() [][]byte {
	var seeds [][]byte
	add := func(f *frames) { seeds = append(seeds, f.bytes()) }

	f := newFrames()
	f.fr.WriteSettingsAck()
	f.headers(1, true, ":status", "200")
	add(f)

	f = newFrames()
	f.fr.WriteSettingsAck()
	f.headers(1, false, ":status", "200", "content-type", "text/plain", "content-length", "2")
	f.fr.WriteData(1, true, []byte("hi"))
	add(f)

	// gRPC style: HEADERS, DATA, trailers.
	f = newFrames()
	f.headers(1, false, ":status", "200", "content-type", "application/grpc")
	f.fr.WriteData(1, false, []byte{0, 0, 0, 0, 2, 'o', 'k'})
	f.headers(1, true, "grpc-status", "0", "grpc-message", "")
	add(f)

	// 100-continue, then the final head split over a CONTINUATION.
	f = newFrames()
	f.headers(1, false, ":status", "100")
	blk := f.block(":status", "200", "x-long", strings.Repeat("v", 200))
	f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:5]})
	f.fr.WriteContinuation(1, true, blk[5:])
	f.fr.WriteData(1, true, nil)
	add(f)

	f = newFrames()
	f.fr.WriteWindowUpdate(0, 1<<20)
	f.fr.WritePing(false, [8]byte{8, 7, 6, 5, 4, 3, 2, 1})
	f.fr.WriteWindowUpdate(1, 1000)
	f.headers(1, false, ":status", "503")
	f.fr.WriteRSTStream(1, http2.ErrCodeInternal)
	add(f)

	f = newFrames()
	f.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	add(f)

	f = newFrames()
	f.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: f.block(getReq...), EndHeaders: true})
	f.headers(1, true, ":status", "204")
	add(f)
	return seeds
}

// headersWritten reports whether the client's bytes so far (after the
// preface) hold a HEADERS frame.
func headersWritten(b []byte) bool {
	if len(b) < len(http2.ClientPreface) {
		return false
	}
	b = b[len(http2.ClientPreface):]
	for len(b) >= 9 {
		n := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		if http2.FrameType(b[3]) == http2.FrameHeaders {
			return true
		}
		if len(b) < 9+n {
			return false
		}
		b = b[9+n:]
	}
	return false
}

func FuzzClientFrames(f *testing.F) {
	for _, s := range clientSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var settings bytes.Buffer
		http2.NewFramer(&settings, nil).WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
		c := newScriptConn(settings.Bytes(), data)
		var mu sync.Mutex
		var written []byte
		var once sync.Once
		c.onWrite = func(p []byte) {
			mu.Lock()
			written = append(written, p...)
			ok := headersWritten(written)
			mu.Unlock()
			if ok {
				once.Do(func() { close(c.release) })
			}
		}
		// If no HEADERS is ever written, let the bytes in anyway.
		timer := time.AfterFunc(500*time.Millisecond, func() { once.Do(func() { close(c.release) }) })
		defer timer.Stop()

		var dials atomic.Int32
		cl := &Client{Dial: func(ctx context.Context) (net.Conn, error) {
			if dials.Add(1) > 1 {
				return nil, errors.New("fuzz: no more connections")
			}
			return c, nil
		}}
		defer cl.CloseIdle()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", "http://fuzz.test/", nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := cl.RoundTrip(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("RoundTrip (and body read) did not return within 5s (context deadline 2s, input %d bytes)", len(data))
		}
		c.Close()
	})
}
