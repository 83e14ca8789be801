package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
	"golang.org/x/net/http/httpguts"
)

func readReq(t testing.TB, s string) (*Head, error) {
	t.Helper()
	var h Head
	err := h.ReadRequest(bufio.NewReaderSize(strings.NewReader(s), 16))
	return &h, err
}

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		err         error
		forwardable bool
		method      string
		target      string
		host        string
		cl          int64
		chunked     bool
		close       bool
	}{
		{name: "get", in: "GET /a?b=c HTTP/1.1\r\nHost: web\r\nAccept: */*\r\n\r\n", forwardable: true, method: "GET", target: "/a?b=c", host: "web", cl: -1},
		{name: "bare LF", in: "GET / HTTP/1.1\nHost: web\n\n", forwardable: true, method: "GET", target: "/", host: "web", cl: -1},
		{name: "post with length", in: "POST /p HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\n\r\nhello", forwardable: true, method: "POST", target: "/p", host: "w", cl: 5},
		{name: "repeated equal lengths", in: "POST /p HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", forwardable: true, method: "POST", target: "/p", host: "w", cl: 5},
		{name: "chunked", in: "POST /p HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n", forwardable: true, method: "POST", target: "/p", host: "w", cl: -1, chunked: true},
		{name: "close", in: "GET / HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", forwardable: true, method: "GET", target: "/", host: "w", cl: -1, close: true},
		{name: "percent escapes", in: "GET /a%20b?q=%2F HTTP/1.1\r\nHost: w\r\n\r\n", forwardable: true, method: "GET", target: "/a%20b?q=%2F", host: "w", cl: -1},
		{name: "host literals", in: "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]:8080\r\n\r\n", forwardable: true, method: "GET", target: "/", host: "[fe80::1%25eth0]:8080", cl: -1},
		{name: "options asterisk", in: "OPTIONS * HTTP/1.1\r\nHost: w\r\n\r\n", forwardable: true, method: "OPTIONS", target: "*", host: "w", cl: -1},

		{name: "http/1.0 goes to net/http", in: "GET / HTTP/1.0\r\nHost: w\r\n\r\n", method: "GET", target: "/", host: "w", cl: -1},
		{name: "no host", in: "GET / HTTP/1.1\r\n\r\n", method: "GET", target: "/", cl: -1},
		{name: "two hosts", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", method: "GET", target: "/", host: "b", cl: -1},
		{name: "upgrade", in: "GET / HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", method: "GET", target: "/", host: "w", cl: -1},
		{name: "expect", in: "PUT / HTTP/1.1\r\nHost: w\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", method: "PUT", target: "/", host: "w", cl: 1},
		{name: "connect", in: "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", method: "CONNECT", target: "a:443", host: "a:443", cl: -1},
		{name: "absolute form", in: "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", target: "http://a/", host: "a", cl: -1},
		{name: "length and chunked (smuggling)", in: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", method: "POST", target: "/", host: "w", cl: 3, chunked: true},
		{name: "gzip, chunked", in: "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", method: "POST", target: "/", host: "w", cl: -1},
		{name: "empty transfer-encoding", in: "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: \r\n\r\n", method: "POST", target: "/", host: "w", cl: -1},
		{name: "chunked in a list", in: "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked,\r\n\r\n", method: "POST", target: "/", host: "w", cl: -1},
		{name: "chunked twice", in: "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", method: "POST", target: "/", host: "w", cl: -1},
		{name: "bad percent escape", in: "GET /a%zz HTTP/1.1\r\nHost: w\r\n\r\n", method: "GET", target: "/a%zz", host: "w", cl: -1},
		{name: "truncated percent escape", in: "GET /a% HTTP/1.1\r\nHost: w\r\n\r\n", method: "GET", target: "/a%", host: "w", cl: -1},
		{name: "space in the host", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", method: "GET", target: "/", host: "a b", cl: -1},
		{name: "path in the host", in: "GET / HTTP/1.1\r\nHost: a/b?c\r\n\r\n", method: "GET", target: "/", host: "a/b?c", cl: -1},
		{name: "hop-by-hop named by connection", in: "GET / HTTP/1.1\r\nHost: w\r\nConnection: x-secret\r\nX-Secret: 1\r\n\r\n", method: "GET", target: "/", host: "w", cl: -1},

		{name: "length list", in: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 5, 5\r\n\r\n", err: ErrMalformed},
		{name: "conflicting lengths", in: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", err: ErrMalformed},
		{name: "repeated lengths, differently written", in: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n", err: ErrMalformed},
		{name: "signed length", in: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: +5\r\n\r\n", err: ErrMalformed},
		{name: "empty length", in: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: \r\n\r\n", err: ErrMalformed},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: w\r\nX: a\r\n b\r\n\r\n", err: ErrMalformed},
		{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : w\r\n\r\n", err: ErrMalformed},
		{name: "control character in value", in: "GET / HTTP/1.1\r\nHost: w\x00\r\n\r\n", err: ErrMalformed},
		{name: "bare CR in value", in: "GET / HTTP/1.1\r\nHost: w\rX: y\r\n\r\n", err: ErrMalformed},
		{name: "version", in: "GET / HTTP/2.0\r\nHost: w\r\n\r\n", err: ErrMalformed},
		{name: "HTTP/2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", err: ErrMalformed},
		{name: "space in target", in: "GET /a b HTTP/1.1\r\nHost: w\r\n\r\n", err: ErrMalformed},
		{name: "empty line first (net/http refuses it)", in: "\r\nGET / HTTP/1.1\r\nHost: w\r\n\r\n", err: ErrMalformed},
		{name: "too large", in: "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", MaxHeadBytes) + "\r\n\r\n", err: ErrHeadTooLarge},
		{name: "truncated", in: "GET / HTTP/1.1\r\nHost: w\r\n", err: io.ErrUnexpectedEOF},
		{name: "nothing", in: "", err: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := readReq(t, tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := h.Forwardable(); got != tt.forwardable {
				t.Errorf("Forwardable = %v, want %v", got, tt.forwardable)
			}
			if h.Method() != tt.method || h.Target() != tt.target || h.Host() != tt.host {
				t.Errorf("method, target, host = %q %q %q, want %q %q %q", h.Method(), h.Target(), h.Host(), tt.method, tt.target, tt.host)
			}
			if h.ContentLength != tt.cl || h.Chunked != tt.chunked || h.Close != tt.close {
				t.Errorf("length, chunked, close = %d %v %v, want %d %v %v", h.ContentLength, h.Chunked, h.Close, tt.cl, tt.chunked, tt.close)
			}
		})
	}
}

func TestForwardedHead(t *testing.T) {
	h, err := readReq(t, "GET /x HTTP/1.1\r\nHost: web\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nTE: trailers\r\n"+
		"Conduit-Client-Id: forged\r\nX-A:  1 \r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	h.Drop("conduit-client-id")
	h.Add("Conduit-Client-Id", "real")
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	h.writeRequest(w)
	_ = w.Flush()
	want := "GET /x HTTP/1.1\r\nHost: web\r\nTE: trailers\r\nX-A: 1\r\nConduit-Client-Id: real\r\n\r\n"
	if out.String() != want {
		t.Fatalf("forwarded head\n%q\nwant\n%q", out.String(), want)
	}
	if got := h.Get("x-a"); got != "1" {
		t.Errorf("Get = %q", got)
	}
}

// TestUnsentMark: netx.HeaderUnsent sets Head.Unsent, in any case, and
// never travels on: it is hop-by-hop between two proxies.
func TestUnsentMark(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"HTTP/1.1 502 Bad Gateway\r\nConduit-Proxy-Unsent: 1\r\nContent-Length: 0\r\n\r\n", true},
		{"HTTP/1.1 502 Bad Gateway\r\nconduit-proxy-unsent: 1\r\nX-A: b\r\n\r\n", true},
		{"HTTP/1.1 502 Bad Gateway\r\nConduit-Proxy-Error: x\r\nContent-Length: 0\r\n\r\n", false},
	} {
		var h Head
		if err := h.ReadResponse(bufio.NewReader(strings.NewReader(tt.in))); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		h.writeResponse(w, false)
		_ = w.Flush()
		if h.Unsent != tt.want || strings.Contains(strings.ToLower(out.String()), "unsent") || h.Get(netx.HeaderUnsent) != "" ||
			len(h.httpHeader(true, nil)[netx.HeaderUnsent]) != 0 {
			t.Errorf("%q: Unsent %v (want %v), forwarded as %q", tt.in, h.Unsent, tt.want, out.String())
		}
		h.reset()
		if h.Unsent {
			t.Error("reset kept Unsent")
		}
	}
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		head   bool
		status int
		mode   bodyMode
		err    error
	}{
		{name: "length", in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", status: 200, mode: bodyFixed},
		{name: "no reason", in: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", status: 200, mode: bodyNone},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", status: 200, mode: bodyChunked},
		{name: "until close", in: "HTTP/1.0 200 OK\r\n\r\n", status: 200, mode: bodyUntilClose},
		{name: "other coding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", status: 200, mode: bodyUntilClose},
		{name: "head", in: "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n", head: true, status: 200, mode: bodyNone},
		{name: "no content", in: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, mode: bodyNone},
		{name: "not modified", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", status: 304, mode: bodyNone},
		{name: "continue", in: "HTTP/1.1 100 Continue\r\n\r\n", status: 100, mode: bodyNone},
		{name: "bad code", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: ErrMalformed},
		{name: "bad version", in: "HTTP/3.0 200 OK\r\n\r\n", err: ErrMalformed},
		{name: "bad lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", err: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			err := h.ReadResponse(bufio.NewReader(strings.NewReader(tt.in)))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Status != tt.status || h.responseBody(tt.head) != tt.mode {
				t.Errorf("status, mode = %d %d, want %d %d", h.Status, h.responseBody(tt.head), tt.status, tt.mode)
			}
		})
	}
}

func TestCopyChunked(t *testing.T) {
	tests := []struct {
		name, in, out string
		err           bool
	}{
		{name: "chunks", in: "5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n", out: "5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n"},
		{name: "trailer with bare LF", in: "3\r\nabc\r\n0\r\nGrpc-Status: 0\n\n", out: "3\r\nabc\r\n0\r\nGrpc-Status: 0\r\n\r\n"},
		{name: "size line with bare LF", in: "3\nabc\r\n0\r\n\r\n", err: true},
		{name: "data end with bare LF", in: "3\r\nabc\n0\r\n\r\n", err: true},
		{name: "whitespace before extensions dropped", in: "5 ;x\r\nhello\r\n0\t;y=1\r\n\r\n", out: "5;x\r\nhello\r\n0;y=1\r\n\r\n"},
		{name: "whitespace after size dropped", in: "3 \r\nabc\r\n0\r\n\r\n", out: "3\r\nabc\r\n0\r\n\r\n"},
		{name: "upper hex", in: "A\r\n0123456789\r\n0\r\n\r\n", out: "A\r\n0123456789\r\n0\r\n\r\n"},
		{name: "data longer than size", in: "2\r\nabc\r\n0\r\n\r\n", err: true},
		{name: "no size", in: ";x\r\n", err: true},
		{name: "bad size", in: "5x\r\nhello\r\n", err: true},
		{name: "huge size", in: "1000000000000000\r\n", err: true},
		{name: "truncated", in: "5\r\nhel", err: true},
		{name: "bad trailer", in: "0\r\nno colon\r\n\r\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			_, err := copyChunked(w, bufio.NewReader(strings.NewReader(tt.in)), nil)
			_ = w.Flush()
			if tt.err {
				if err == nil {
					t.Fatalf("no error; wrote %q", out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.out {
				t.Fatalf("wrote %q, want %q", out.String(), tt.out)
			}
		})
	}
}

// FuzzReadRequest checks the parser against net/http's: a head this package
// forwards must be one net/http reads the same way, so that the fast path
// never forwards what the general path would refuse or frame differently.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /p?q HTTP/1.1\r\nHost: a:80\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-A: 1\r\nx-a: 2\r\nTE: trailers\r\nPragma: no-cache\r\nUser-Agent: \t t \r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var h Head
		if err := h.ReadRequest(bufio.NewReader(bytes.NewReader(in))); err != nil || !h.Forwardable() {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("forwardable here, refused by net/http: %v\n%q", err, in)
		}
		if !httpguts.ValidHostHeader(r.Host) { // net/http's server answers 400
			t.Fatalf("forwardable here, Host refused by net/http: %q", r.Host)
		}
		if r.Method != h.Method() || r.RequestURI != h.Target() || r.Host != h.Host() {
			t.Fatalf("method, target, host %q %q %q; net/http %q %q %q", h.Method(), h.Target(), h.Host(), r.Method, r.RequestURI, r.Host)
		}
		chunked := len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"
		if chunked != h.Chunked {
			t.Fatalf("chunked %v; net/http %v", h.Chunked, chunked)
		}
		if !chunked && max(h.ContentLength, 0) != r.ContentLength {
			t.Fatalf("length %d; net/http %d", h.ContentLength, r.ContentLength)
		}
		if h.Close != r.Close {
			t.Fatalf("close %v; net/http %v", h.Close, r.Close)
		}
		// The fields forwarded (the HTTP/2 hop's request) are those
		// net/http reads, but for the framing and hop-by-hop ones.
		got := h.httpHeader(false, nil)
		delete(got, "Host")
		sameFields(t, got, r.Header, nil, in)
	})
}

// sameFields fails t unless got, the fields a head forwards, holds what
// net/http read (want) but the framing and hop-by-hop fields and those a
// Connection field names (named): the same names, values and order of
// values. Trailer, which net/http takes out of a chunked message's header,
// and a Cache-Control net/http adds for a Pragma (fixPragmaCacheControl)
// are left out of the comparison.
func sameFields(t *testing.T, got, want http.Header, named []string, in []byte) {
	t.Helper()
	want = want.Clone()
	for _, k := range append([]string{"Host", "Connection", "Keep-Alive", "Proxy-Connection", "Content-Length",
		"Transfer-Encoding", http.CanonicalHeaderKey(netx.HeaderUnsent)}, named...) {
		delete(want, http.CanonicalHeaderKey(k))
	}
	var te []string
	for _, v := range want["Te"] {
		if strings.EqualFold(v, "trailers") {
			te = append(te, v)
		}
	}
	if delete(want, "Te"); len(te) > 0 {
		want["Te"] = te
	}
	delete(got, "Trailer")
	delete(want, "Trailer")
	if _, ok := got["Cache-Control"]; !ok && want.Get("Pragma") == "no-cache" {
		delete(want, "Cache-Control")
	}
	for k, vs := range want {
		if strings.Join(got[k], "\x00") != strings.Join(vs, "\x00") || len(got[k]) != len(vs) {
			t.Fatalf("%s: forwarded %q; net/http read %q\n%q", k, got[k], vs, in)
		}
	}
	for k, vs := range got {
		if _, ok := want[k]; !ok {
			t.Fatalf("%s %q forwarded; net/http read none\n%q", k, vs, in)
		}
	}
}

// FuzzCopyChunked checks the chunked framing against net/http's decoder:
// what is copied decodes to the same data as what was read.
func FuzzCopyChunked(f *testing.F) {
	for _, s := range []string{"5\r\nhello\r\n0\r\n\r\n", "1;a=b\r\nx\r\n0\r\nT: v\r\n\r\n", "0\r\n\r\n", "1 ;a\r\nx\r\n0\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if _, err := copyChunked(w, bufio.NewReader(bytes.NewReader(in)), nil); err != nil {
			return
		}
		_ = w.Flush()
		got, err := io.ReadAll(httputilChunked(out.Bytes()))
		if err != nil {
			t.Fatalf("copy refused by net/http: %v\ncopy %q\ninput %q", err, out.Bytes(), in)
		}
		want, herr := io.ReadAll(httputilChunked(in))
		if herr != nil {
			// net/http refuses whitespace before a chunk extension,
			// which RFC 9112 allows (BWS) and the copy drops; the
			// input's data is then what this package's reader reads.
			b := &bodyReader{br: bufio.NewReader(bytes.NewReader(in)), mode: bodyChunked, trailer: http.Header{}}
			var err error
			if want, err = io.ReadAll(readerFunc(b.read)); err != nil {
				t.Fatalf("copied, refused by net/http (%v) and by the body reader (%v)\n%q", herr, err, in)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("copy decodes to %q, input to %q", got, want)
		}
	})
}

// readerFunc is an io.Reader of its function.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// FuzzReadResponse checks the response head parser against net/http's: a
// head read here must be read by net/http with the same status and body
// framing (the fast path and http.Transport must agree on where a
// response ends).
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n0\r\nX: 1\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody",
		"HTTP/1.1 200 OK\r\nContent-Length: 03\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		var h Head
		if err := h.ReadResponse(bufio.NewReader(bytes.NewReader(in))); err != nil || h.OtherTE {
			return
		}
		method := "GET"
		if head {
			method = "HEAD"
		}
		r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(in)), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("read here, refused by net/http: %v\n%q", err, in)
		}
		if r.StatusCode != h.Status {
			t.Fatalf("status %d; net/http %d", h.Status, r.StatusCode)
		}
		mode := h.responseBody(head)
		chunked := len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"
		if mode != bodyNone && (mode == bodyChunked) != chunked {
			t.Fatalf("chunked %v; net/http %v", mode == bodyChunked, chunked)
		}
		switch mode {
		case bodyNone:
			if b, _ := io.ReadAll(r.Body); len(b) != 0 {
				t.Fatalf("no body here; net/http reads %q", b)
			}
		case bodyFixed:
			if r.ContentLength != h.ContentLength {
				t.Fatalf("length %d; net/http %d", h.ContentLength, r.ContentLength)
			}
		case bodyUntilClose:
			if r.ContentLength != -1 || chunked {
				t.Fatalf("read until close here; net/http length %d chunked %v", r.ContentLength, chunked)
			}
		}
		// The http.Response the pool builds from the head (the HTTP/2 hop's
		// answer) says the length it read, as the number's shortest text,
		// whenever the body's length is known, and carries no framing field
		// of its own otherwise.
		resp := (&Pool{}).response(&upConn{br: bufio.NewReader(bytes.NewReader(nil))}, &http.Request{Method: method}, &h)
		wantCL := ""
		if (mode == bodyFixed || mode == bodyNone) && h.ContentLength >= 0 {
			wantCL = strconv.FormatInt(h.ContentLength, 10)
		}
		if got := resp.Header.Values("Content-Length"); len(got) > 1 || resp.Header.Get("Content-Length") != wantCL {
			t.Fatalf("Content-Length %q, want %q\n%q", got, wantCL, in)
		}
		if te, ok := resp.Header["Transfer-Encoding"]; ok {
			t.Fatalf("Transfer-Encoding %q in the header\n%q", te, in)
		}
		// net/http takes a Connection field with close out of the header:
		// the names are read from the head itself.
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(in)))
		_, _ = tp.ReadLine()
		raw, _ := tp.ReadMIMEHeader()
		var named []string
		for _, v := range raw["Connection"] {
			for tok := range strings.SplitSeq(v, ",") {
				// close and keep-alive are options (a field of that
				// name is left to the next hop, as the head does).
				if tok = strings.TrimSpace(tok); !strings.EqualFold(tok, "close") && !strings.EqualFold(tok, "keep-alive") {
					named = append(named, tok)
				}
			}
		}
		got := resp.Header.Clone()
		delete(got, "Content-Length") // checked above
		sameFields(t, got, r.Header, named, in)
	})
}
