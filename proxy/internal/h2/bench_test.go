package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// benchEcho answers with the request body and a header naming the path.
type benchEcho struct{}

func (benchEcho) RoundTrip(r *http.Request) (*http.Response, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"X-Path": {r.URL.Path}}, ContentLength: int64(len(b)), Body: io.NopCloser(bytes.NewReader(b))}, nil
}

// serveLoopback serves srv on a loopback listener until the test ends and
// returns its address.
func serveLoopback(tb testing.TB, srv *Server) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _ = srv.ServeConn(context.Background(), c) }()
		}
	}()
	tb.Cleanup(func() {
		_ = l.Close()
		srv.Shutdown()
	})
	return l.Addr().String()
}

// serveScript accepts one connection on loopback and plays a scripted
// HTTP/2 server on it until the test ends: it reads the preface, writes its
// first frames with hello (nil: an empty SETTINGS), then acks every SETTINGS
// and hands every other frame to onFrame. It returns the address.
func serveScript(tb testing.TB, hello func(*http2.Framer), onFrame func(*http2.Framer, http2.Frame)) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0") // buffered, unlike net.Pipe: both ends write first
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		pre := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, pre); err != nil {
			return
		}
		fr := http2.NewFramer(c, c)
		if hello == nil {
			_ = fr.WriteSettings()
		} else {
			hello(fr)
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if sf, ok := f.(*http2.SettingsFrame); ok {
				if !sf.IsAck() {
					_ = fr.WriteSettingsAck()
				}
				continue
			}
			onFrame(fr, f)
		}
	}()
	return l.Addr().String()
}

// benchPair starts a Server with h on loopback and returns a Client to it.
func benchPair(tb testing.TB, h http.RoundTripper) *Client {
	tb.Helper()
	return clientTo(tb, serveLoopback(tb, &Server{Handler: h}))
}

// clientTo returns a Client that dials addr, its idle connections closed
// when the test ends.
func clientTo(tb testing.TB, addr string) *Client {
	cl := &Client{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	tb.Cleanup(cl.CloseIdle)
	return cl
}

func TestSmoke(t *testing.T) {
	cl := benchPair(t, benchEcho{})
	for _, body := range []string{"", "hello", strings.Repeat("x", 100<<10)} {
		req, _ := http.NewRequest("POST", "http://svc/p?q=1", strings.NewReader(body))
		if body == "" {
			req, _ = http.NewRequest("GET", "http://svc/p?q=1", nil)
		}
		resp, err := cl.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || string(got) != body || resp.Header.Get("X-Path") != "/p" || resp.StatusCode != 200 {
			t.Fatalf("len %d: got %d bytes, err %v, header %v, status %d", len(body), len(got), err, resp.Header, resp.StatusCode)
		}
	}
}

// BenchmarkRoundTrip is one request with a 1 KiB body and its 1 KiB
// response through Client and Server on loopback.
func BenchmarkRoundTrip(b *testing.B) {
	benchExchanges(b, benchPair(b, benchEcho{}), "http://svc/p")
}

// benchExchanges sends 1 KiB POSTs to url through rt and reads each
// response to the end.
func benchExchanges(b *testing.B, rt http.RoundTripper, url string) {
	body := bytes.Repeat([]byte("x"), 1024)
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		_ = resp.Body.Close()
	}
}

// BenchmarkRoundTripNetHTTP is the same exchange through net/http's HTTP/2
// client and server (h2c), for comparison.
func BenchmarkRoundTripNetHTTP(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := benchEcho{}.RoundTrip(r)
		if err != nil {
			w.WriteHeader(502)
			return
		}
		w.Header()["X-Path"] = resp.Header["X-Path"]
		w.Header().Set("Content-Length", "1024")
		_, _ = io.Copy(w, resp.Body)
	})}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	benchExchanges(b, &http.Transport{Protocols: &protos}, "http://"+l.Addr().String()+"/p")
}
