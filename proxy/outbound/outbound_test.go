package outbound

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/discovery"
	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// fakeDest serves fixed endpoints and profiles: a name without either is
// not a Service (NoEndpoints{exists: false}, an empty profile).
type fakeDest struct {
	destinationv1.UnimplementedDestinationServer
	mu        sync.Mutex
	endpoints map[string][]string // name -> "ip:port"; present and empty: a Service without endpoints
	profiles  map[string]*destinationv1.DestinationProfile
}

func (d *fakeDest) Get(req *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.Update]) error {
	d.mu.Lock()
	eps, ok := d.endpoints[req.GetPath()]
	d.mu.Unlock()
	u := &destinationv1.Update{Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: ok}}}
	if len(eps) > 0 {
		set := &destinationv1.WeightedAddrSet{}
		for _, e := range eps {
			host, port, _ := net.SplitHostPort(e)
			p, _ := strconv.Atoi(port)
			set.Addrs = append(set.Addrs, &destinationv1.WeightedAddr{Addr: &destinationv1.TcpAddress{Ip: host, Port: uint32(p)}, Weight: 1})
		}
		u = &destinationv1.Update{Update: &destinationv1.Update_Add{Add: set}}
	}
	if err := stream.Send(u); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (d *fakeDest) GetProfile(req *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	d.mu.Lock()
	p, ok := d.profiles[req.GetPath()]
	d.mu.Unlock()
	if !ok {
		p = &destinationv1.DestinationProfile{}
	}
	if err := stream.Send(p); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// testProxy returns an outbound proxy whose destination service is d.
func testProxy(t *testing.T, d *fakeDest) (*Proxy, *metrics.Registry) {
	t.Helper()
	return testProxyOpts(t, d, discovery.Options{})
}

// testProxyOpts is testProxy with any destination service d, discovery
// options o, and mods applied to the proxy's options.
func testProxyOpts(t *testing.T, d destinationv1.DestinationServer, o discovery.Options, mods ...func(*Options)) (*Proxy, *metrics.Registry) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	destinationv1.RegisterDestinationServer(s, d)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := metrics.New()
	opts := Options{Log: slog.New(slog.DiscardHandler), Metrics: reg, Discovery: discovery.New(ctx, cc, o),
		Namespace: "ns", DiscoveryTimeout: 2 * time.Second}
	for _, m := range mods {
		m(&opts)
	}
	p := New(opts)
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, reg
}

// answering is an application that answers its name.
func answering(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func get(p *Proxy, method, url string, body io.Reader) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	p.ServeHTTP(w, httptest.NewRequest(method, url, body))
	return w
}

// A traffic split backend that cannot take the request (a Service without
// endpoints, scaled to zero; not a Service) leaves it to the apex Service.
func TestSplitBackendWithoutEndpoints(t *testing.T) {
	apex := answering(t, "apex")
	v2 := answering(t, "v2")
	tests := []struct {
		name    string
		backend string
		eps     []string // nil: not a Service
		want    string
	}{
		{"backend with endpoints", "web-v2.ns.svc.cluster.local:80", []string{v2}, "v2"},
		{"backend without endpoints", "web-v2.ns.svc.cluster.local:80", []string{}, "apex"},
		{"backend not a service", "web-v2.ns.svc.cluster.local:80", nil, "apex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDest{
				endpoints: map[string][]string{"web.ns.svc.cluster.local:80": {apex}},
				profiles: map[string]*destinationv1.DestinationProfile{"web.ns.svc.cluster.local:80": {
					FullyQualifiedName: "web.ns.svc.cluster.local",
					DstOverrides: []*destinationv1.WeightedDst{
						{Authority: tt.backend, Weight: 1},
						{Authority: "web.ns.svc.cluster.local:80", Weight: 0}, // never picked
					},
				}},
			}
			if tt.eps != nil {
				d.endpoints[tt.backend] = tt.eps
			}
			p, _ := testProxy(t, d)
			for range 5 {
				w := get(p, "GET", "http://web/", nil)
				if w.Code != http.StatusOK || w.Body.String() != tt.want {
					t.Fatalf("got %d %q (%s), want %q", w.Code, w.Body, w.Header().Get("conduit-proxy-error"), tt.want)
				}
			}
		})
	}
}

func testRoute(name, method, path string, retryable bool, timeout time.Duration) *destinationv1.Route {
	r := &destinationv1.Route{
		Condition: &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_All{All: &destinationv1.RequestMatch_Seq{Matches: []*destinationv1.RequestMatch{
			{Match: &destinationv1.RequestMatch_Method{Method: method}},
			{Match: &destinationv1.RequestMatch_Path{Path: &destinationv1.PathMatch{Regex: path}}},
		}}}},
		MetricsLabels: map[string]string{"route": name},
		IsRetryable:   retryable,
	}
	if timeout > 0 {
		r.Timeout = durationpb.New(timeout)
	}
	return r
}

func exposition(t *testing.T, reg *metrics.Registry) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := reg.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A route's timeout ends the request upstream and answers 504, counted as
// a failure.
func TestRouteTimeout(t *testing.T) {
	ended := make(chan struct{}, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			ended <- struct{}{}
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(app.Close)
	d := &fakeDest{
		endpoints: map[string][]string{"web.ns.svc.cluster.local:80": {app.Listener.Addr().String()}},
		profiles: map[string]*destinationv1.DestinationProfile{"web.ns.svc.cluster.local:80": {
			FullyQualifiedName: "web.ns.svc.cluster.local",
			Routes: []*destinationv1.Route{
				testRoute("slow", "GET", "/slow", false, 100*time.Millisecond),
				testRoute("slow-retried", "GET", "/slow-retried", true, 100*time.Millisecond),
			},
		}},
	}
	p, reg := testProxy(t, d)
	for _, path := range []string{"/slow", "/slow-retried"} {
		start := time.Now()
		w := get(p, "GET", "http://web"+path, nil)
		if w.Code != http.StatusGatewayTimeout || w.Header().Get("conduit-proxy-error") == "" {
			t.Errorf("%s: got %d %q, want 504 with conduit-proxy-error", path, w.Code, w.Header().Get("conduit-proxy-error"))
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s: answered after %v", path, took)
		}
		select {
		case <-ended:
		case <-time.After(2 * time.Second):
			t.Errorf("%s: the application's request was not ended", path)
		}
	}
	if m := exposition(t, reg); !strings.Contains(m, `route="slow"`) || !strings.Contains(m, `classification="failure"`) {
		t.Errorf("timeout not counted as a failure:\n%s", m)
	}
}

// A retryable route is retried only with the request body whole in memory:
// never one larger than the buffer or of unknown length (streamed).
func TestRetriesReplayOnlyBufferedBodies(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		n := len(bodies)
		mu.Unlock()
		if err != nil || n == 1 {
			http.Error(w, "first attempt fails", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(app.Close)
	big := strings.Repeat("x", maxRetryBody+1)
	tests := []struct {
		name     string
		method   string
		path     string
		body     func() io.Reader
		want     int
		attempts int
	}{
		{"GET retried", "GET", "/r", func() io.Reader { return nil }, 200, 2},
		{"small body retried", "POST", "/r", func() io.Reader { return strings.NewReader("hello") }, 200, 2},
		{"body above the buffer", "POST", "/r", func() io.Reader { return strings.NewReader(big) }, 500, 1},
		{"streamed body", "POST", "/r", func() io.Reader { return io.MultiReader(strings.NewReader("hello")) }, 500, 1},
		{"route not retryable", "POST", "/n", func() io.Reader { return strings.NewReader("hello") }, 500, 1},
	}
	d := &fakeDest{
		endpoints: map[string][]string{"web.ns.svc.cluster.local:80": {app.Listener.Addr().String()}},
		profiles: map[string]*destinationv1.DestinationProfile{"web.ns.svc.cluster.local:80": {
			FullyQualifiedName: "web.ns.svc.cluster.local",
			Routes:             []*destinationv1.Route{testRoute("r", "GET", "/r", true, 0), testRoute("r-post", "POST", "/r", true, 0), testRoute("n", "POST", "/n", false, 0)},
		}},
	}
	p, _ := testProxy(t, d)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			bodies = nil
			mu.Unlock()
			var sent string
			body := tt.body()
			if body != nil {
				b, _ := io.ReadAll(tt.body())
				sent = string(b)
			}
			w := get(p, tt.method, "http://web"+tt.path, body)
			mu.Lock()
			defer mu.Unlock()
			if w.Code != tt.want || len(bodies) != tt.attempts {
				t.Fatalf("got %d after %d attempts, want %d after %d", w.Code, len(bodies), tt.want, tt.attempts)
			}
			for i, b := range bodies {
				if b != sent {
					t.Errorf("attempt %d body of %d bytes, want %d", i, len(b), len(sent))
				}
			}
		})
	}
}

// A Service unused for a while has its discovery watch dropped; when it is
// used again, its endpoints are those of a new watch, not the last ones the
// dropped watch knew.
func TestEndpointsAfterIdleWatchDropped(t *testing.T) {
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "old") }))
	now := answering(t, "new")
	d := &fakeDest{endpoints: map[string][]string{"web.ns.svc.cluster.local:80": {gone.Listener.Addr().String()}}}
	p, _ := testProxyOpts(t, d, discovery.Options{IdleTimeout: 100 * time.Millisecond})
	if w := get(p, "GET", "http://web/", nil); w.Body.String() != "old" {
		t.Fatalf("first request: %d %q", w.Code, w.Body)
	}
	// The pod is replaced while nobody calls the Service.
	gone.Close()
	d.mu.Lock()
	d.endpoints["web.ns.svc.cluster.local:80"] = []string{now}
	d.mu.Unlock()
	time.Sleep(400 * time.Millisecond)
	for i := range 3 {
		if w := get(p, "GET", "http://web/", nil); w.Code != http.StatusOK || w.Body.String() != "new" {
			t.Fatalf("request %d after the idle time: %d %q (%s)", i, w.Code, w.Body, w.Header().Get("conduit-proxy-error"))
		}
	}
}

// upstreams lists the endpoints the proxy keeps (their addresses).
func upstreams(p *Proxy) []string {
	var out []string
	p.ups.Range(func(_, v any) bool {
		out = append(out, v.(*upstream).addr.Addr)
		return true
	})
	return out
}

func names(p *Proxy) int {
	n := 0
	p.lbs.Range(func(any, any) bool { n++; return true })
	return n
}

// TestSweep: the endpoints of pods a rollout replaced, and the names no
// longer called, are forgotten; those in use are kept.
func TestSweep(t *testing.T) {
	old, cur := answering(t, "old"), answering(t, "new")
	d := &fakeDest{endpoints: map[string][]string{"web.ns.svc.cluster.local:80": {old}}}
	p, _ := testProxyOpts(t, d, discovery.Options{IdleTimeout: 100 * time.Millisecond})
	if w := get(p, "GET", "http://web/", nil); w.Body.String() != "old" {
		t.Fatalf("first request: %d %q", w.Code, w.Body)
	}
	// A rollout replaces the pod while nobody calls; the next request
	// watches the name again and goes to the new one.
	d.mu.Lock()
	d.endpoints["web.ns.svc.cluster.local:80"] = []string{cur}
	d.mu.Unlock()
	time.Sleep(400 * time.Millisecond)
	if w := get(p, "GET", "http://web/", nil); w.Body.String() != "new" {
		t.Fatalf("after the rollout: %d %q", w.Code, w.Body)
	}
	if got := upstreams(p); len(got) != 2 {
		t.Fatalf("upstreams before the sweep: %v, want the old and the new endpoint", got)
	}
	// Soon after, nothing is forgotten: the old endpoint was used lately.
	p.sweep()
	if got := upstreams(p); len(got) != 2 || names(p) != 1 {
		t.Fatalf("a sweep forgot endpoints in use lately: %v, %d names", got, names(p))
	}
	// Later, the old endpoint goes; the new one stays while its name's
	// endpoint set holds it.
	later := func() {
		for range idleSweeps {
			p.sweep()
		}
	}
	if w := get(p, "GET", "http://web/", nil); w.Body.String() != "new" {
		t.Fatalf("request: %d %q", w.Code, w.Body)
	}
	later()
	if got := upstreams(p); len(got) != 1 || got[0] != cur || names(p) != 1 {
		t.Fatalf("after a later sweep: upstreams %v (want [%s]), %d names (want 1)", got, cur, names(p))
	}
	// Once the name is no longer called, its watch is dropped, and the
	// sweep forgets the name and then its endpoint.
	time.Sleep(400 * time.Millisecond)
	later()
	if got := upstreams(p); len(got) != 0 || names(p) != 0 {
		t.Fatalf("after the name went unused: upstreams %v, %d names; want none", got, names(p))
	}
	// And the name works again.
	if w := get(p, "GET", "http://web/", nil); w.Body.String() != "new" {
		t.Fatalf("after the sweep: %d %q", w.Code, w.Body)
	}
}

// TestShutdownWhileServing: Shutdown may run while Serve sets up (SIGTERM at
// start): nothing orders them, and under -race nothing may race.
func TestShutdownWhileServing(t *testing.T) {
	servetest.ShutdownWhileServing(t, New(Options{Log: slog.New(slog.DiscardHandler), Metrics: metrics.New()}))
}

// TestFastPathHostsOnOneConnection: the HTTP/1.1 fast path routes each
// request of a connection by its own Host, though it remembers the last
// one's normalized name.
func TestFastPathHostsOnOneConnection(t *testing.T) {
	d := &fakeDest{endpoints: map[string][]string{
		"web.ns.svc.cluster.local:80": {answering(t, "web")},
		"api.ns.svc.cluster.local:80": {answering(t, "api")},
	}}
	p, _ := testProxyOpts(t, d, discovery.Options{}, func(o *Options) {
		o.OrigDst = origdst.Static(netip.MustParseAddrPort("127.0.0.1:1"))
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Serve(l) }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, host := range []string{"web", "api", "api.ns", "web", "web.ns.svc.cluster.local:80", "api"} {
		want := strings.SplitN(host, ".", 2)[0]
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(b) != want {
			t.Errorf("Host %s: %d %q (%s), want %q", host, resp.StatusCode, b, resp.Header.Get("Conduit-Proxy-Error"), want)
		}
	}
}
