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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/h2"
	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// seen is what a test application saw of a request's conduit-client-id,
// and the trailer fields the request announced.
type seen struct {
	header, trailer string
	body            string
	// announced: the names in the Trailer header, and the keys of
	// r.Trailer before the body is read (net/http's servers move the
	// header there), canonical.
	announced []string
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
		var announced []string
		for _, v := range r.Header.Values("Trailer") {
			for name := range strings.SplitSeq(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					announced = append(announced, http.CanonicalHeaderKey(name))
				}
			}
		}
		for name := range r.Trailer {
			announced = append(announced, name)
		}
		b, _ := io.ReadAll(r.Body)
		s := seen{header: r.Header.Get(HeaderClientID), trailer: r.Trailer.Get(HeaderClientID), body: string(b), announced: announced}
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
	return servetest.Serve(t, p), p
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
	forged := http.Header{HeaderClientID: {"forged.ns.serviceaccount.identity.conduit.cluster.local"}, otherTrailer: {"1"}}
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

// otherTrailer is a trailer field the test clients send, and announce
// with conduit-client-id when they announce.
const otherTrailer = "X-Checksum"

const chunkedForged = "POST /t HTTP/1.1\r\nHost: web.ns.svc.cluster.local\r\nTransfer-Encoding: chunked\r\n%s\r\n" +
	"5\r\nhello\r\n0\r\nConduit-Client-Id: forged.ns.serviceaccount.identity.conduit.cluster.local\r\nX-Checksum: 1\r\n\r\n"

// TestClientIDTrailerStripped: a conduit-client-id sent as a request
// trailer never reaches the application, on any inbound path; an
// application that merges trailers into headers would take it for the
// authenticated peer's identity. Nor does its announcement in the Trailer
// header, which would have the application expect (or merge) a trailer
// the proxy never delivers; the other names announced with it still reach
// the application, on the paths that forward announcements. (The
// announcement went through on the HTTP/1.1 fast path and the HTTP/2 fast
// path.)
func TestClientIDTrailerStripped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		appH2 bool
		send  func(t testing.TB, addr string) int
		// keeps: the application sees otherTrailer announced.
		keeps bool
	}{
		{"HTTP/1.1 fast path, chunked trailer", Options{}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, fmt.Sprintf(chunkedForged, ""))
		}, false},
		{"HTTP/1.1 fast path, announced chunked trailer", Options{}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, fmt.Sprintf(chunkedForged, "Trailer: Conduit-Client-Id, X-Checksum\r\n"))
		}, true},
		{"HTTP/1.1 fast path, trailer announced alone, in lower case", Options{}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, fmt.Sprintf(chunkedForged, "Trailer: conduit-client-id\r\n"))
		}, false},
		{"HTTP/1.1 fast path, trailer announced in two fields", Options{}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, fmt.Sprintf(chunkedForged, "Trailer: X-Checksum ,CONDUIT-CLIENT-ID\r\nTrailer: Conduit-Client-Id\r\n"))
		}, true},
		{"HTTP/1.1 net/http path, chunked trailer", Options{NoFastPath: true}, false, func(t testing.TB, addr string) int {
			return sendHTTP1(t, addr, fmt.Sprintf(chunkedForged, "Trailer: Conduit-Client-Id, X-Checksum\r\n"))
		}, true},
		{"HTTP/2 fast path to an HTTP/2 application, trailing HEADERS", Options{}, true, func(t testing.TB, addr string) int {
			return sendH2(t, addr, false, false)
		}, false},
		{"HTTP/2 fast path to an HTTP/2 application, announced trailer", Options{}, true, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, false)
		}, true},
		{"HTTP/1 over HTTP/2 between proxies, trailing HEADERS", Options{}, false, func(t testing.TB, addr string) int {
			return sendH2(t, addr, false, true)
		}, false},
		{"HTTP/1 over HTTP/2 between proxies, announced trailer", Options{}, false, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, true)
		}, true},
		{"HTTP/1 over HTTP/2, HTTP/1 by net/http's transport", Options{NoFastPath: true}, false, func(t testing.TB, addr string) int {
			return sendH2(t, addr, false, true)
		}, false},
		{"HTTP/1 over HTTP/2, announced, HTTP/1 by net/http's transport", Options{NoFastPath: true}, false, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, true)
		}, true},
		{"HTTP/2 by net/http's server", Options{NoH2FastPath: true}, true, func(t testing.TB, addr string) int {
			return sendH2(t, addr, true, false)
		}, true},
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
				if slices.Contains(s.announced, HeaderClientID) {
					t.Errorf("the application saw trailers %q announced; want no %s", s.announced, HeaderClientID)
				}
				if tc.keeps && !slices.Contains(s.announced, otherTrailer) {
					t.Errorf("the application saw trailers %q announced; want %s", s.announced, otherTrailer)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the request did not reach the application")
			}
		})
	}
}

// TestUnannounce: conduit-client-id leaves a request's Trailer header,
// whatever its case, and r.Trailer; the other names stay, and a header
// left naming nothing goes. A request without the header allocates
// nothing.
func TestUnannounce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		header  []string // the Trailer header's values (nil: none)
		trailer []string // r.Trailer's keys
		want    []string // the Trailer header left (nil: none)
		wantT   []string // r.Trailer's keys left
	}{
		{name: "none"},
		{name: "only r.Trailer", trailer: []string{HeaderClientID, "X-Sum"}, wantT: []string{"X-Sum"}},
		{name: "the only name", header: []string{"Conduit-Client-Id"}},
		{name: "lower case, among others", header: []string{"x-sum, conduit-client-id ,grpc-status"}, want: []string{"x-sum, grpc-status"}},
		{name: "several values", header: []string{"CONDUIT-CLIENT-ID", "X-Sum,Conduit-Client-Id", ", "}, want: []string{"X-Sum"}},
		{name: "not named", header: []string{"X-Sum,  Conduit-Client"}, want: []string{"X-Sum,  Conduit-Client"}},
		{name: "both", header: []string{"Conduit-Client-Id, X-Sum"}, trailer: []string{HeaderClientID, "X-Sum"}, want: []string{"X-Sum"}, wantT: []string{"X-Sum"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{Header: http.Header{}}
			if tc.header != nil {
				r.Header["Trailer"] = tc.header
			}
			if tc.trailer != nil {
				r.Trailer = http.Header{}
				for _, k := range tc.trailer {
					r.Trailer[k] = nil
				}
			}
			unannounce(r, HeaderClientID)
			if got, ok := r.Header["Trailer"]; !slices.Equal(got, tc.want) || ok != (tc.want != nil) {
				t.Errorf("Trailer header %q (present: %v), want %q", got, ok, tc.want)
			}
			var keys []string
			for k := range r.Trailer {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tc.wantT) {
				t.Errorf("r.Trailer's keys %q, want %q", keys, tc.wantT)
			}
		})
	}
	r := &http.Request{Header: http.Header{"Content-Type": {"text/plain"}}, Trailer: http.Header{"X-Sum": nil}}
	if allocs := testing.AllocsPerRun(100, func() { unannounce(r, HeaderClientID) }); allocs != 0 {
		t.Errorf("%v allocations for a request without a Trailer header, want 0", allocs)
	}
}
