package inbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/h2"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// seen is what a test application saw of a request's conduit-client-id.
type seen struct {
	header, trailer string
	body            string
}

// startApp starts an application on loopback: net/http's HTTP/1.1 server,
// or the proxy's own HTTP/2 server for h2c (net/http's drops trailers the
// request did not announce; this one, like many servers, keeps them). It
// reads each request body to the end and reports what it saw.
func startApp(t testing.TB, useH2 bool) (port uint16, got <-chan seen) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan seen, 64)
	report := func(r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s := seen{header: r.Header.Get(HeaderClientID), trailer: r.Trailer.Get(HeaderClientID), body: string(b)}
		select {
		case ch <- s:
		default:
		}
	}
	if useH2 {
		srv := &h2.Server{Handler: appRT(func(r *http.Request) (*http.Response, error) {
			report(r)
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
		})}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { _ = srv.ServeConn(context.Background(), c) }()
			}
		}()
		t.Cleanup(func() { srv.Shutdown(); l.Close() })
	} else {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { report(r) })}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { srv.Close() })
	}
	return uint16(l.Addr().(*net.TCPAddr).Port), ch
}

type appRT func(*http.Request) (*http.Response, error)

func (f appRT) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// startInbound serves an inbound proxy on loopback whose every connection's
// original destination is the application's port.
func startInbound(t testing.TB, o Options, appPort uint16) (string, *Proxy) {
	t.Helper()
	o.Log = slog.New(slog.DiscardHandler)
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	o.OrigDst = origdst.Func(func(net.Conn) (netip.AddrPort, error) {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), appPort), nil
	})
	o.Identity = noIdentity{}
	o.DetectTimeout = time.Second
	p := New(o)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Serve(l) }()
	t.Cleanup(func() {
		l.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return l.Addr().String(), p
}

// noIdentity is a proxy identity no TLS client names.
type noIdentity struct{}

func (noIdentity) Name() string { return "web.ns.serviceaccount.identity.conduit.cluster.local" }
func (noIdentity) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return nil, errors.New("test: no certificate")
}
func (noIdentity) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return nil, errors.New("test: no certificate")
}

// sendHTTP1 writes a raw HTTP/1.1 request and reads its response status.
func sendHTTP1(t testing.TB, addr, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// trailerBody sets its request's trailers once read to the end, as a
// client that did not announce them would send them.
type trailerBody struct {
	io.Reader
	r       *http.Request
	trailer http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		b.r.Trailer = b.trailer
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// sendH2 sends a request with a forged conduit-client-id trailer over
// h2c, announced or not, as HTTP/1 carried over HTTP/2 between proxies
// (conduit-orig-proto) when origProto is set.
func sendH2(t testing.TB, addr string, announced, origProto bool) int {
	t.Helper()
	c := &h2.Client{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	defer c.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://web.ns.svc.cluster.local/t", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.ContentLength = -1
	forged := http.Header{HeaderClientID: {"forged.ns.serviceaccount.identity.conduit.cluster.local"}}
	if announced {
		r.Trailer = forged
		r.Body = io.NopCloser(strings.NewReader("hello"))
	} else {
		r.Body = &trailerBody{Reader: strings.NewReader("hello"), r: r, trailer: forged}
	}
	if origProto {
		r.Header.Set(HeaderOrigProto, "HTTP/1.1")
	}
	resp, err := c.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

const chunkedForged = "POST /t HTTP/1.1\r\nHost: web.ns.svc.cluster.local\r\nTransfer-Encoding: chunked\r\n%s\r\n" +
	"5\r\nhello\r\n0\r\nConduit-Client-Id: forged.ns.serviceaccount.identity.conduit.cluster.local\r\n\r\n"

// TestClientIDTrailerStripped: a conduit-client-id sent as a request
// trailer never reaches the application, on any inbound path; an
// application that merges trailers into headers would take it for the
// authenticated peer's identity.
func TestClientIDTrailerStripped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		appH2 bool
		send  func(t testing.TB, addr string) int
	}{
		{"HTTP/1.1 fast path, chunked trailer", Options{}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, fmt.Sprintf(chunkedForged, ""))
		}},
		{"HTTP/1.1 fast path, announced chunked trailer", Options{}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, fmt.Sprintf(chunkedForged, "Trailer: Conduit-Client-Id\r\n"))
		}},
		{"HTTP/1.1 net/http path, chunked trailer", Options{NoFastPath: true}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, fmt.Sprintf(chunkedForged, "Trailer: Conduit-Client-Id\r\n"))
		}},
		{"HTTP/2 fast path to an HTTP/2 application, trailing HEADERS", Options{}, true, func(t testing.TB, addr string) int {
			return sendH2(t, addr, false, false)
		}},
		{"HTTP/2 fast path to an HTTP/2 application, announced trailer", Options{}, true, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, false)
		}},
		{"HTTP/1 over HTTP/2 between proxies, trailing HEADERS", Options{}, false, func(t testing.TB, addr string) int {
			return sendH2(t, addr, false, true)
		}},
		{"HTTP/1 over HTTP/2 between proxies, announced trailer", Options{}, false, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, true)
		}},
		{"HTTP/1 over HTTP/2, HTTP/1 by net/http's transport", Options{NoFastPath: true}, false, func(t testing.TB, addr string) int {
			return sendH2(t, addr, false, true)
		}},
		{"HTTP/2 by net/http's server", Options{NoH2FastPath: true}, true, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, got := startApp(t, tc.appH2)
			addr, _ := startInbound(t, tc.opts, port)
			if code := tc.send(t, addr); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			select {
			case s := <-got:
				if s.body != "hello" {
					t.Errorf("the application read body %q, want %q", s.body, "hello")
				}
				if s.trailer != "" || s.header != "" {
					t.Errorf("the application saw conduit-client-id %q in the trailers and %q in the header; want neither (no client certificate)", s.trailer, s.header)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the request did not reach the application")
			}
		})
	}
}
