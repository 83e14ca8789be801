package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHTTPHeader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		drop []string
		add  []string
		want http.Header
	}{
		{
			name: "names canonical, framing fields left out",
			in:   "POST /p HTTP/1.1\r\nHost: w\r\ncontent-type: text/plain\r\nContent-Length: 3\r\nX-ID: 1\r\n\r\n",
			want: http.Header{"Host": {"w"}, "Content-Type": {"text/plain"}, "X-Id": {"1"}},
		},
		{
			name: "repeated names keep their order",
			in:   "GET / HTTP/1.1\r\nHost: w\r\nAccept: a\r\nX: 1\r\naccept: b\r\n\r\n",
			want: http.Header{"Host": {"w"}, "Accept": {"a", "b"}, "X": {"1"}},
		},
		{
			name: "dropped and added fields",
			in:   "GET / HTTP/1.1\r\nHost: w\r\nConduit-Client-Id: forged\r\nTransfer-Encoding: chunked\r\n\r\n",
			drop: []string{"conduit-client-id"},
			add:  []string{"conduit-client-id", "web.ns", "x-b3", "1"},
			want: http.Header{"Host": {"w"}, "Conduit-Client-Id": {"web.ns"}, "X-B3": {"1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := readReq(t, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.drop {
				h.Drop(n)
			}
			for i := 0; i+1 < len(tt.add); i += 2 {
				h.Add(tt.add[i], tt.add[i+1])
			}
			if got := h.httpHeader(false, nil); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("httpHeader(false) = %v, want %v", got, tt.want)
			}
		})
	}
}

// The header's values share one backing array and the head's text: appending
// to one name must not touch another, and reading the next message into the
// same Head must not change the strings already handed out.
func TestHTTPHeaderOutlivesTheHead(t *testing.T) {
	in := "GET /one HTTP/1.1\r\nHost: w\r\nA: 1\r\nB: 2\r\n\r\n" + "GET /two HTTP/1.1\r\nHost: x\r\nA: 9\r\nB: 8\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	var h Head
	if err := h.ReadRequest(br); err != nil {
		t.Fatal(err)
	}
	hdr, target := h.httpHeader(false, nil), h.Target()
	hdr["A"] = append(hdr["A"], "extra")
	if got := hdr["B"]; len(got) != 1 || got[0] != "2" {
		t.Fatalf("appending to A changed B: %q", got)
	}
	if err := h.ReadRequest(br); err != nil {
		t.Fatal(err)
	}
	if h.Target() != "/two" || h.httpHeader(false, nil).Get("A") != "9" {
		t.Fatalf("second head read as %q A=%q", h.Target(), h.httpHeader(false, nil).Get("A"))
	}
	if target != "/one" || hdr.Get("Host") != "w" || !reflect.DeepEqual(hdr["A"], []string{"1", "extra"}) {
		t.Fatalf("the first head's strings changed: %q %v", target, hdr)
	}
}

func TestStatusText(t *testing.T) {
	tests := []struct {
		in, want string
		allocs   float64
	}{
		{"HTTP/1.1 200 OK\r\n\r\n", "200 OK", 0},
		{"HTTP/1.1 404 Not Found\r\n\r\n", "404 Not Found", 0},
		{"HTTP/1.1 200 Fine\r\n\r\n", "200 Fine", -1},
		{"HTTP/1.1 299 Whatever\r\n\r\n", "299 Whatever", -1},
		{"HTTP/1.0 503 Service Unavailable\r\n\r\n", "503 Service Unavailable", 0},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			var h Head
			if err := h.ReadResponse(bufio.NewReader(strings.NewReader(tt.in))); err != nil {
				t.Fatal(err)
			}
			if got := h.statusText(); got != tt.want {
				t.Fatalf("statusText() = %q, want %q", got, tt.want)
			}
			if tt.allocs >= 0 {
				if n := testing.AllocsPerRun(100, func() { _ = h.statusText() }); n != tt.allocs {
					t.Fatalf("%v allocations, want %v", n, tt.allocs)
				}
			}
		})
	}
	for minor, want := range map[int]string{0: "HTTP/1.0", 1: "HTTP/1.1", 2: "HTTP/1.2"} {
		if got := protoName(minor); got != want {
			t.Errorf("protoName(%d) = %q, want %q", minor, got, want)
		}
	}
}

// TestBodyWouldBlock: a body says a Read would block only when nothing of
// it is buffered (between chunks, no whole chunk-size line) and it has not
// ended; a read then takes what is buffered without blocking.
func TestBodyWouldBlock(t *testing.T) {
	tests := []struct {
		name     string
		mode     bodyMode
		left     int64
		buffered string // what the connection has delivered so far
		want     bool
	}{
		{"no body", bodyNone, 0, "", false},
		{"fixed, all read", bodyFixed, 0, "", false},
		{"fixed, nothing buffered", bodyFixed, 5, "", true},
		{"fixed, part buffered", bodyFixed, 5, "he", false},
		{"until close, nothing buffered", bodyUntilClose, 0, "", true},
		{"until close, buffered", bodyUntilClose, 0, "x", false},
		{"chunked, nothing buffered", bodyChunked, 0, "", true},
		{"chunked, half a size line", bodyChunked, 0, "1", true},
		{"chunked, a size line only", bodyChunked, 0, "5\r\n", true},
		{"chunked, a size line and data", bodyChunked, 0, "5\r\nhe", false},
		{"chunked, a whole chunk without its line end", bodyChunked, 0, "5\r\nhello", true},
		{"chunked, a whole chunk", bodyChunked, 0, "5\r\nhello\r\n", false},
		{"chunked, the last chunk", bodyChunked, 0, "0\r\n\r\n", false},
		{"chunked, the last chunk and a trailer", bodyChunked, 0, "0\r\nA: b\r\n\r\n", false},
		{"chunked, the last chunk, trailers to come", bodyChunked, 0, "0\r\nA: b\r\n", true},
		{"chunked, a bad size line", bodyChunked, 0, "zz\r\n", false},
		{"chunked, inside a chunk", bodyChunked, 3, "llo\r\n", false},
		{"chunked, the rest of a chunk without its line end", bodyChunked, 3, "llo", true},
		{"chunked, part of the rest of a chunk", bodyChunked, 3, "l", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := net.Pipe()
			defer c.Close()
			defer peer.Close()
			br := bufio.NewReader(c)
			if tt.buffered != "" {
				go func() { _, _ = peer.Write([]byte(tt.buffered)) }()
				if _, err := br.Peek(len(tt.buffered)); err != nil {
					t.Fatal(err)
				}
			}
			b := bodyReader{br: br, mode: tt.mode, left: tt.left, trailer: http.Header{}}
			if got := b.wouldBlock(); got != tt.want {
				t.Fatalf("wouldBlock() = %v, want %v", got, tt.want)
			}
			if tt.want {
				return
			}
			// It said so: a read returns at once (the pipe would block).
			done := make(chan error, 1)
			go func() { _, err := b.read(make([]byte, 16)); done <- err }()
			select {
			case err := <-done:
				if err != nil && err != io.EOF && tt.name != "chunked, a bad size line" {
					t.Fatalf("read: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("read blocked where wouldBlock said it would not")
			}
		})
	}
}

// TestFlushBeforeBlock: what a copy has buffered (a head) is flushed before
// a read of a body that may block, and not before one that will not (it
// leaves with the body in one write).
func TestFlushBeforeBlock(t *testing.T) {
	for _, tt := range []struct {
		name      string
		body      io.Reader
		wantFlush bool
	}{
		{"cannot tell", strings.NewReader("x"), true},
		{"would block", blocking(true), true},
		{"would not block", blocking(false), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			w := bufio.NewWriter(&out)
			w.WriteString("HTTP/1.1 200 OK\r\n\r\n")
			if err := flushBeforeBlock(w, tt.body); err != nil {
				t.Fatal(err)
			}
			if flushed := out.Len() > 0; flushed != tt.wantFlush {
				t.Errorf("flushed %v, want %v", flushed, tt.wantFlush)
			}
		})
	}
}

type blocking bool

func (b blocking) Read(p []byte) (int, error) { return 0, io.EOF }
func (b blocking) WouldBlock() bool           { return bool(b) }
