package inbound

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/conduit-mesh/conduit/proxy/internal/h2"
)

// BenchmarkInbound forwards requests with a 1 KiB body through the inbound
// proxy to an application on loopback, client and application included.
func BenchmarkInbound(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	b.Run("HTTP1FastPath", func(b *testing.B) {
		benchHTTP1(b, body, false)
	})
	b.Run("HTTP1FastPathChunked", func(b *testing.B) {
		benchHTTP1(b, body, true)
	})
	b.Run("HTTP1OverH2", func(b *testing.B) {
		benchH2(b, body, false)
	})
	b.Run("H2", func(b *testing.B) {
		benchH2(b, body, true)
	})
}

func benchHTTP1(b *testing.B, body []byte, chunked bool) {
	port, _ := startApp(b, false)
	addr, _ := startInbound(b, Options{}, port)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var req []byte
	if chunked {
		req = []byte("POST /t HTTP/1.1\r\nHost: web.ns.svc.cluster.local\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n")
		req = append(append(req, body...), "\r\n0\r\n\r\n"...)
	} else {
		req = []byte("POST /t HTTP/1.1\r\nHost: web.ns.svc.cluster.local\r\nContent-Length: 1024\r\n\r\n")
		req = append(req, body...)
	}
	br := bufio.NewReader(c)
	do := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	runWarm(b, do)
}

// benchH2 sends over h2c: to an HTTP/2 application, or as HTTP/1 carried
// over HTTP/2 between proxies to an HTTP/1.1 one.
func benchH2(b *testing.B, body []byte, appH2 bool) {
	port, _ := startApp(b, appH2)
	addr, _ := startInbound(b, Options{}, port)
	c := &h2.Client{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	defer c.CloseIdle()
	rd := bytes.NewReader(body)
	do := func() {
		rd.Reset(body)
		r, err := http.NewRequest(http.MethodPost, "http://web.ns.svc.cluster.local/t", rd)
		if err != nil {
			b.Fatal(err)
		}
		if !appH2 {
			r.Header.Set(HeaderOrigProto, "HTTP/1.1")
		}
		resp, err := c.RoundTrip(r)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	runWarm(b, do)
}

// runWarm runs do 100 times to warm the pools and connections up, then
// b.N times measured, with allocations reported.
func runWarm(b *testing.B, do func()) {
	for range 100 {
		do()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		do()
	}
}
