package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// TestCopyChunkedDropsTrailers: the trailer fields a request names with
// DropTrailer are left out of the copy, whatever their case, and nothing
// else is; a section read a byte at a time (each line split across reads,
// the writer flushed in between) is copied the same.
func TestCopyChunkedDropsTrailers(t *testing.T) {
	const body = "5\r\nhello\r\n0\r\n"
	tests := []struct {
		name    string
		drop    []string
		trailer string // after the last chunk, blank line included
		out     string // the trailer section copied ("": an error)
	}{
		{name: "no names", trailer: "Conduit-Client-Id: forged\r\n\r\n", out: "Conduit-Client-Id: forged\r\n\r\n"},
		{name: "no trailer", drop: []string{"Conduit-Client-Id"}, trailer: "\r\n", out: "\r\n"},
		{name: "the only field", drop: []string{"Conduit-Client-Id"}, trailer: "Conduit-Client-Id: forged\r\n\r\n", out: "\r\n"},
		{name: "case-insensitive", drop: []string{"Conduit-Client-Id"}, trailer: "cONDUIT-client-ID: forged\r\nCONDUIT-CLIENT-ID: forged\r\n\r\n", out: "\r\n"},
		{name: "name given in lower case", drop: []string{"conduit-client-id"}, trailer: "Conduit-Client-Id: forged\r\n\r\n", out: "\r\n"},
		{
			name: "among others", drop: []string{"Conduit-Client-Id"},
			trailer: "Grpc-Status: 0\r\nConduit-Client-Id: forged\r\nX-Sum: 3\r\nconduit-client-id:forged\r\nX-Last: z\r\n\r\n",
			out:     "Grpc-Status: 0\r\nX-Sum: 3\r\nX-Last: z\r\n\r\n",
		},
		{
			name: "several names", drop: []string{"Conduit-Client-Id", "X-Secret"},
			trailer: "X-Secret: s\r\nX-Keep: k\r\nConduit-Client-Id: forged\r\n\r\n",
			out:     "X-Keep: k\r\n\r\n",
		},
		{
			name: "prefixes and extensions of the name are kept", drop: []string{"Conduit-Client-Id"},
			trailer: "Conduit-Client-Id-Extra: a\r\nConduit-Client: b\r\nX-Conduit-Client-Id: c\r\nConduit-Client-Idx: d\r\n\r\n",
			out:     "Conduit-Client-Id-Extra: a\r\nConduit-Client: b\r\nX-Conduit-Client-Id: c\r\nConduit-Client-Idx: d\r\n\r\n",
		},
		{name: "a dropped name that is a prefix of the field's", drop: []string{"Conduit"}, trailer: "Conduit-Client-Id: forged\r\n\r\n", out: "Conduit-Client-Id: forged\r\n\r\n"},
		{name: "empty value", drop: []string{"Conduit-Client-Id"}, trailer: "Conduit-Client-Id:\r\nX-Keep: k\r\n\r\n", out: "X-Keep: k\r\n\r\n"},
		{name: "bare LF line endings", drop: []string{"Conduit-Client-Id"}, trailer: "Conduit-Client-Id: forged\nX-Keep: k\n\n", out: "X-Keep: k\r\n\r\n"},
		// obs-fold: the codec refuses a continuation line in a trailer (as
		// in a head), so the body fails rather than a continuation of a
		// dropped field being forwarded, or taken for a field of its own.
		{name: "obs-fold after a dropped field", drop: []string{"Conduit-Client-Id"}, trailer: "Conduit-Client-Id: forged\r\n forged-too\r\n\r\n"},
		{name: "obs-fold after a kept field", drop: []string{"Conduit-Client-Id"}, trailer: "X-Keep: k\r\n\tConduit-Client-Id: forged\r\n\r\n"},
		{name: "space before the colon", drop: []string{"Conduit-Client-Id"}, trailer: "Conduit-Client-Id : forged\r\n\r\n"},
	}
	reads := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"one read", func(r io.Reader) io.Reader { return r }},
		{"a byte per read", iotest.OneByteReader},
	}
	for _, tt := range tests {
		for _, rd := range reads {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				var out bytes.Buffer
				w := bufio.NewWriterSize(&out, 16)
				br := bufio.NewReaderSize(rd.wrap(strings.NewReader(body+tt.trailer)), 128)
				n, err := copyChunked(w, br, tt.drop)
				_ = w.Flush()
				if tt.out == "" {
					if err == nil {
						t.Fatalf("no error; wrote %q", out.String())
					}
					if strings.Contains(out.String(), "forged") {
						t.Errorf("wrote a dropped field before failing: %q", out.String())
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if n != 5 || out.String() != body+tt.out {
					t.Fatalf("copied %d bytes of data, wrote %q; want 5, %q", n, out.String(), body+tt.out)
				}
				if br.Buffered() != 0 {
					t.Errorf("%d bytes left unread", br.Buffered())
				}
			})
		}
	}
}

// TestCopyChunkedDropsTrailersWithoutAllocating: dropping costs no
// allocation, even for a name longer than a conversion's stack buffer.
func TestCopyChunkedDropsTrailersWithoutAllocating(t *testing.T) {
	long := "X-A-Trailer-Name-Longer-Than-Thirty-Two-Bytes"
	in := "5\r\nhello\r\n0\r\nX-Keep: k\r\nconduit-client-id: forged\r\n" + long + ": v\r\n\r\n"
	drop := []string{"Conduit-Client-Id", long}
	sr := strings.NewReader(in)
	br := bufio.NewReader(sr)
	w := bufio.NewWriter(io.Discard)
	allocs := testing.AllocsPerRun(100, func() {
		sr.Reset(in)
		br.Reset(sr)
		if _, err := copyChunked(w, br, drop); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per copy, want 0", allocs)
	}
}

// TestDropTrailerAnnouncement: a name given to DropTrailer leaves the
// Trailer fields of the forwarded head too, whatever its case, and the
// other names stay (rejoined with ", "); a Trailer field left naming
// nothing goes. Without DropTrailer, the fields are forwarded as they are.
func TestDropTrailerAnnouncement(t *testing.T) {
	const start = "POST /t HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n"
	for _, tt := range []struct {
		name   string
		drop   []string
		fields string // after start, each with its CRLF
		want   string // the forwarded fields, after start
	}{
		{name: "no Trailer field", drop: []string{"Conduit-Client-Id"}, fields: "X-A: 1\r\n", want: "X-A: 1\r\n"},
		{name: "nothing to drop", fields: "Trailer: Conduit-Client-Id\r\n", want: "Trailer: Conduit-Client-Id\r\n"},
		{name: "the only name", drop: []string{"Conduit-Client-Id"}, fields: "Trailer: Conduit-Client-Id\r\nX-A: 1\r\n", want: "X-A: 1\r\n"},
		{name: "case-insensitive", drop: []string{"Conduit-Client-Id"}, fields: "trailer: cONDUIT-client-ID\r\n", want: ""},
		{
			name: "among others", drop: []string{"Conduit-Client-Id"},
			fields: "Trailer: X-Sum,conduit-client-id ,  Grpc-Status\r\n",
			want:   "Trailer: X-Sum, Grpc-Status\r\n",
		},
		{
			name: "in several fields", drop: []string{"Conduit-Client-Id"},
			fields: "Trailer: Conduit-Client-Id\r\nX-A: 1\r\nTRAILER: X-Sum, Conduit-Client-Id\r\n",
			want:   "X-A: 1\r\nTRAILER: X-Sum\r\n",
		},
		{
			name: "several names", drop: []string{"Conduit-Client-Id", "X-Secret"},
			fields: "Trailer: X-Secret, X-Keep, Conduit-Client-Id\r\n",
			want:   "Trailer: X-Keep\r\n",
		},
		{
			name: "prefixes and extensions of the name are kept", drop: []string{"Conduit-Client-Id"},
			fields: "Trailer: Conduit-Client-Id-Extra, Conduit-Client, X-Conduit-Client-Id\r\n",
			want:   "Trailer: Conduit-Client-Id-Extra, Conduit-Client, X-Conduit-Client-Id\r\n",
		},
		{name: "empty list elements", drop: []string{"Conduit-Client-Id"}, fields: "Trailer: , Conduit-Client-Id,,X-Sum,\r\n", want: "Trailer: X-Sum\r\n"},
		{name: "empty value", drop: []string{"Conduit-Client-Id"}, fields: "Trailer:\r\nX-A: 1\r\n", want: "X-A: 1\r\n"},
		{name: "a field named like Trailer", drop: []string{"Conduit-Client-Id"}, fields: "Trailers: Conduit-Client-Id\r\n", want: "Trailers: Conduit-Client-Id\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			if err := h.ReadRequest(bufio.NewReader(strings.NewReader(start + tt.fields + "\r\n"))); err != nil {
				t.Fatal(err)
			}
			for _, name := range tt.drop {
				h.DropTrailer(name)
			}
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			h.writeRequest(w)
			_ = w.Flush()
			if want := start + tt.want + "\r\n"; out.String() != want {
				t.Errorf("forwarded head\n%q\nwant\n%q", out.String(), want)
			}
		})
	}
}

// TestDropTrailerAnnouncementWithoutAllocating: writing a head with
// DropTrailer names costs no allocation, with a Trailer field or without.
func TestDropTrailerAnnouncementWithoutAllocating(t *testing.T) {
	for _, in := range []string{
		"POST /t HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
		"POST /t HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, Conduit-Client-Id\r\n\r\n",
	} {
		var h Head
		sr := strings.NewReader(in)
		br := bufio.NewReader(sr)
		w := bufio.NewWriter(io.Discard)
		allocs := testing.AllocsPerRun(100, func() {
			sr.Reset(in)
			br.Reset(sr)
			if err := h.ReadRequest(br); err != nil {
				t.Fatal(err)
			}
			h.DropTrailer("Conduit-Client-Id")
			h.writeRequest(w)
		})
		if allocs != 0 {
			t.Errorf("%v allocations per head %q, want 0", allocs, in)
		}
	}
}

// TestDropTrailerResetWithHead: the names last as long as their request
// head; the next request on the connection drops none of them.
func TestDropTrailerResetWithHead(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	var h Head
	if err := h.ReadRequest(br); err != nil {
		t.Fatal(err)
	}
	h.DropTrailer("Conduit-Client-Id")
	h.DropTrailer("X-Secret")
	if len(h.dropTrailers) != 2 {
		t.Fatalf("dropTrailers %q, want two names", h.dropTrailers)
	}
	if err := h.ReadRequest(br); err != nil {
		t.Fatal(err)
	}
	if len(h.dropTrailers) != 0 {
		t.Fatalf("dropTrailers %q after the next request, want none", h.dropTrailers)
	}
}

// dropTrailerRouter routes as its Router after naming trailers to drop.
type dropTrailerRouter struct {
	Router
	names []string
	off   atomic.Bool // names none
}

func (r *dropTrailerRouter) Route(h *Head) (Call, bool) {
	if !r.off.Load() {
		for _, n := range r.names {
			h.DropTrailer(n)
		}
	}
	return r.Router.Route(h)
}

// trailerUpstream answers every request 200 and reports the bytes of each
// request as read off the wire and the trailers net/http decodes in them.
func trailerUpstream(t *testing.T) (addr string, got <-chan [2]string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan [2]string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var raw bytes.Buffer
				br := bufio.NewReader(io.TeeReader(c, &raw))
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, r.Body)
					var tr []string
					for k, vs := range r.Trailer {
						for _, v := range vs {
							tr = append(tr, k+"="+v)
						}
					}
					slices.Sort(tr)
					wire := raw.String()[:raw.Len()-br.Buffered()]
					raw.Next(len(wire))
					ch <- [2]string{wire, strings.Join(tr, ",")}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String(), ch
}

// TestServerDropsTrailers: a request's trailer fields named by its Router
// do not reach the upstream, on a Pool as through a RoundTrip, when the
// trailer section arrives in pieces; the connection's next request drops
// nothing its router did not name for it.
func TestServerDropsTrailers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		router func(addr string) Router
		raw    bool // the upstream reads the client's trailer section as it was sent
	}{
		{"pool", func(addr string) Router { return &testRouter{pool: poolTo(addr)} }, true},
		{"round tripper", func(addr string) Router { return &testRouter{rt: viaTransport(addr)} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, got := trailerUpstream(t)
			drop := &dropTrailerRouter{Router: tc.router(addr), names: []string{"Conduit-Client-Id"}}
			f := startFast(t, drop)
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			send := func(parts ...string) {
				t.Helper()
				for _, p := range parts {
					if _, err := io.WriteString(c, p); err != nil {
						t.Fatal(err)
					}
					time.Sleep(20 * time.Millisecond) // each part a read of its own
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Path") != "" {
					t.Fatalf("status %d, path %q; want 200 on the fast path", resp.StatusCode, resp.Header.Get("X-Path"))
				}
			}
			check := func(want string, absent, present []string) {
				t.Helper()
				select {
				case g := <-got:
					if g[1] != want {
						t.Errorf("upstream decoded trailers %q, want %q", g[1], want)
					}
					if !tc.raw {
						return
					}
					for _, s := range absent {
						if strings.Contains(g[0], s) {
							t.Errorf("upstream read %q in %q", s, g[0])
						}
					}
					for _, s := range present {
						if !strings.Contains(g[0], s) {
							t.Errorf("upstream did not read %q in %q", s, g[0])
						}
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the request did not reach the upstream")
				}
			}
			const head = "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
			send(head, "0\r\nX-Keep: 1\r\ncOnDuIt-Cli", "ent-Id: forged\r\nConduit-Client-Id-Extra: 2\r", "\n\r\n")
			// The pool writes the trailer fields it kept in any order.
			check("Conduit-Client-Id-Extra=2,X-Keep=1", []string{"forged", "cOnDuIt-Cli"}, []string{"X-Keep: 1\r\n", "Conduit-Client-Id-Extra: 2\r\n"})
			// The router names it again for the next request: it is still dropped.
			send(head + "0\r\nConduit-Client-Id: forged\r\n\r\n")
			check("", []string{"forged"}, []string{"0\r\n\r\n"})
			drop.off.Store(true) // a request whose router names nothing
			send(head + "0\r\nConduit-Client-Id: kept\r\n\r\n")
			check("Conduit-Client-Id=kept", nil, []string{"Conduit-Client-Id: kept\r\n\r\n"})
		})
	}
}

// TestServerAnnouncesResponseTrailers: a response's trailer announcement
// (its Trailer field) reaches the client however the round trip was made:
// from a Pool, which keeps the field in the header, and from net/http's
// transport, which moves it into resp.Trailer. It is checked on a HEAD
// response (no body: only the announcement tells of the trailers), and on
// a chunked GET response whose trailer follows. net/http's HTTP/2
// transport moves it on every response, its HTTP/1 transport on chunked
// ones.
func TestServerAnnouncesResponseTrailers(t *testing.T) {
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "hello")
		w.Header().Set("X-Sum", "5")
	}))
	app.Config.Protocols = new(http.Protocols)
	app.Config.Protocols.SetHTTP1(true)
	app.Config.Protocols.SetUnencryptedHTTP2(true)
	app.Start()
	defer app.Close()
	addr := strings.TrimPrefix(app.URL, "http://")
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	for _, tc := range []struct {
		name   string
		router Router
	}{
		{"pool", &testRouter{pool: poolTo(addr)}},
		{"HTTP/1.1 round tripper", &testRouter{rt: viaTransport(addr)}},
		{"HTTP/2 round tripper", &testRouter{rt: func(r *http.Request) (*http.Response, error) {
			r.URL.Scheme, r.URL.Host, r.RequestURI = "http", addr, ""
			return h2c.RoundTrip(r)
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFast(t, tc.router)
			for _, method := range []string{http.MethodHead, http.MethodGet} {
				c, err := net.Dial("tcp", f.addr)
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, method+" / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				c.Close()
				if err != nil || resp.Header.Get("X-Path") != "" {
					t.Fatalf("%s: %v, path %q; want a response on the fast path", method, err, resp.Header.Get("X-Path"))
				}
				switch method {
				case http.MethodHead:
					if got := resp.Header["Trailer"]; len(got) != 1 || got[0] != "X-Sum" {
						t.Errorf("HEAD: Trailer %q, want [X-Sum]", got)
					}
					if resp.ContentLength != -1 {
						t.Errorf("HEAD: ContentLength %d, want -1 (none sent)", resp.ContentLength)
					}
				case http.MethodGet:
					if string(body) != "hello" || resp.Trailer.Get("X-Sum") != "5" {
						t.Errorf("GET: body %q, trailer %v; want hello and X-Sum 5", body, resp.Trailer)
					}
				}
			}
		})
	}
}
