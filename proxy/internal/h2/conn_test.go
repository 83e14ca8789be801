package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// bufConn is a net.Conn that keeps what is written.
type bufConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *bufConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *bufConn) SetWriteDeadline(time.Time) error { return nil }

// TestHeadersSensitive: credentials go out as never-indexed literals, every
// time; other fields are indexed and repeat as one byte.
func TestHeadersSensitive(t *testing.T) {
	nc := &bufConn{}
	var c conn
	c.init(nc, bytes.NewReader(nil), DefaultWriteTimeout)
	for i := range 2 {
		c.lock()
		err := c.writeHeaders(uint32(2*i+1), true, func(enc func(string, string)) {
			enc("authorization", "Bearer secret-token")
			enc("cookie", "session=secret")
			enc("user-agent", "a-client/1.2.3")
		})
		c.unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	fr := http2.NewFramer(nil, bytes.NewReader(nc.out.Bytes()))
	dec := hpack.NewDecoder(4096, nil)
	for i := range 2 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		block := f.(*http2.HeadersFrame).HeaderBlockFragment()
		fields, err := dec.DecodeFull(block)
		if err != nil {
			t.Fatal(err)
		}
		for _, hf := range fields {
			if want := hf.Name != "user-agent"; hf.Sensitive != want {
				t.Errorf("block %d: %s sensitive %v, want %v", i, hf.Name, hf.Sensitive, want)
			}
		}
	}
}

// eagerBody is a body whose reads never block: 16 KiB chunks up to n bytes.
type eagerBody struct {
	n      int
	onRead func()
}

func (b *eagerBody) WouldBlock() bool { return false }
func (b *eagerBody) Read(p []byte) (int, error) {
	b.onRead()
	if b.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), b.n)
	b.n -= k
	return k, nil
}

// TestSenderTakesTurns: a body that is always ready does not keep the
// connection to itself: the sender lets go of it every maxHeld bytes.
func TestSenderTakesTurns(t *testing.T) {
	nc := &bufConn{}
	var c conn
	c.init(nc, bytes.NewReader(nil), DefaultWriteTimeout)
	c.sendConn = 1 << 30
	st := c.newStream(1)
	st.sendOff = 1 << 30
	w := sender{c: &c, s: st}
	maxSeen, releases, wasLocked := 0, 0, false
	body := &eagerBody{n: 1 << 20, onRead: func() {
		maxSeen = max(maxSeen, w.held)
		if wasLocked && !w.locked {
			releases++
		}
		wasLocked = w.locked
	}}
	done, err := w.copyBody(body, make([]byte, maxFrame), false, 0, nil, func() http.Header { return nil }, false)
	if err != nil || !done {
		t.Fatalf("copyBody: done %v, %v", done, err)
	}
	if maxSeen > maxHeld {
		t.Errorf("held the connection for %d bytes, want at most %d", maxSeen, maxHeld)
	}
	if want := (1 << 20) / maxHeld; releases < want-1 {
		t.Errorf("let go of the connection %d times while sending 1 MiB, want about %d", releases, want)
	}
	if got := nc.out.Len(); got < 1<<20 {
		t.Errorf("wrote %d bytes, want the 1 MiB body and its frame headers", got)
	}
}

// raceEnabled is set when the tests run under the race detector.
var raceEnabled bool

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// laggard reads from r, pausing for a millisecond every 64 KiB: a reader
// slower than loopback, which the window keeps fed.
type laggard struct {
	r io.Reader
	n int
}

func (l *laggard) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if l.n += n; l.n >= 64<<10 {
		l.n = 0
		time.Sleep(time.Millisecond)
	}
	return n, err
}

// TestLongBodyMemoryBounded: a body far longer than the stream window,
// read in small pieces by a reader that never quite catches up, costs the
// receiver about a window of memory, not the body's length: what was read
// goes back to the pools (recvBuf).
func TestLongBodyMemoryBounded(t *testing.T) {
	if raceEnabled {
		t.Skip("under the race detector sync.Pool drops buffers at random")
	}
	const size = 64 << 20
	cl := benchPair(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(io.LimitReader(zeros{}, size)), ContentLength: -1}, nil
	}))
	req, _ := http.NewRequest("GET", "http://svc/big", nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := cl.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyBuffer(io.Discard, &laggard{r: resp.Body}, make([]byte, 1<<10))
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if err != nil || n != size {
		t.Fatalf("read %d bytes (%v), want %d", n, err, size)
	}
	// Client and server in this process; a buffer that grew with the body
	// would have allocated more than twice its length.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MiB body read slowly allocated %.1f MiB", size>>20, float64(alloc)/(1<<20))
	if alloc > 4*streamWindow {
		t.Errorf("a %d MiB body allocated %d MiB, want at most %d MiB (four stream windows)", size>>20, alloc>>20, 4*streamWindow>>20)
	}
}

// TestEncodeHeader: what encodeHeader leaves out: connection-specific
// fields, the fields a Connection field names (net/http's HTTP/1.1
// transport leaves them in a response), a te other than trailers, and an
// empty User-Agent, net/http's "send none" (netx.NoDefaultUserAgent,
// ReverseProxy); other empty values go.
func TestEncodeHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
		want []string
	}{
		{"regular", http.Header{"Accept": {"*/*"}, "X-Empty": {""}, "User-Agent": {"curl/8"}}, []string{"accept=*/*", "user-agent=curl/8", "x-empty="}},
		{"empty User-Agent", http.Header{"User-Agent": {""}, "X-A": {"1"}}, []string{"x-a=1"}},
		{"connection-specific", http.Header{"Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5"}, "Transfer-Encoding": {"chunked"}, "Upgrade": {"h2c"}, "Host": {"a"}, "X-A": {"1"}}, []string{"x-a=1"}},
		{"named by Connection", http.Header{"Connection": {"X-Hop, x-other", "X-Third"}, "X-Hop": {"1"}, "X-Other": {"2"}, "X-Third": {"3"}, "X-Kept": {"4"}}, []string{"x-kept=4"}},
		{"te", http.Header{"Te": {"gzip", "Trailers"}}, []string{"te=trailers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			encodeHeader(tc.h, func(name, value string) { got = append(got, name+"="+value) })
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("encoded %q, want %q", got, tc.want)
			}
		})
	}
}
