package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/app"
	"github.com/conduit-mesh/conduit/proxy/balance"
	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// TestDeadEndpointsAreSkipped: a Service whose endpoints include two that
// cannot be reached, as happens while discovery has yet to drop pods that
// are gone: one refuses connections, the other accepts and closes them
// (the mTLS handshake fails). Every request, whatever its method, body and
// protocol, must still be answered by the live endpoint: a request that
// was not sent goes to another endpoint. And a dead endpoint must not draw
// the traffic (a refused connection is the fastest answer there is): after
// a failure it is avoided for balance.FailBackoff.
func TestDeadEndpointsAreSkipped(t *testing.T) {
	for _, mode := range transportModes {
		t.Run(mode.name, func(t *testing.T) { testDeadEndpoints(t, mode.env) })
	}
}

// transportModes are the ways two proxies can carry HTTP between them: the
// proxy's environment for each.
var transportModes = []struct {
	name string
	env  map[string]string
}{
	{name: "HTTP/1 over one HTTP/2 connection"},
	{name: "HTTP/1.1 between proxies", env: map[string]string{"CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT": "http1"}},
	{name: "fast path off", env: map[string]string{"CONDUIT_PROXY_HTTP1_FAST_PATH": "false"}},
	{name: "net/http HTTP/2 between proxies", env: map[string]string{"CONDUIT_PROXY_HTTP2_FAST_PATH": "false"}},
}

func testDeadEndpoints(t *testing.T, env map[string]string) {
	m := newMesh(t)
	app := startApp(t)
	server := m.startProxyEnv(t, serverID, app.addr, "127.0.0.1:1", env, true)

	var accepted atomic.Int64
	m.mu.Lock()
	m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{
		meshedAddr(refusingAddr(t), serverID), meshedAddr(closingAddr(t, &accepted), serverID), meshedAddr(server.InboundAddr().String(), serverID)}
	m.mu.Unlock()
	client := m.startProxyEnv(t, clientID, "127.0.0.1:1", "10.255.255.1:80", env, true)
	out := client.OutboundAddr().String()

	start := time.Now()
	const rounds = 10
	requestMix(t, out, "/r", rounds)
	elapsed := time.Since(start)
	// Unary and streaming gRPC: bodies of unknown length.
	testGRPC(t, out)

	// Without the backoff, the closing endpoint would be tried on about a
	// third of the 3*rounds requests (more: it fails fastest). With it, once
	// per FailBackoff at most, plus the first try.
	if n, limit := accepted.Load(), 1+int64(elapsed/balance.FailBackoff); n > limit {
		t.Errorf("the endpoint that closes every connection was dialed %d times in %s, want at most %d", n, elapsed.Round(time.Millisecond), limit)
	}
	t.Logf("%d requests in %s; the closing endpoint was dialed %d times", 3*rounds, elapsed.Round(time.Millisecond), accepted.Load())
}

// TestStoppedApplicationIsSkipped: an endpoint whose proxy runs but whose
// application no longer listens (it stopped, while discovery still lists
// the pod). Its proxy refuses each request unprocessed (REFUSED_STREAM on
// the HTTP/2 connection between the proxies), and the client's proxy sends
// it to the other endpoint: every request is answered there.
func TestStoppedApplicationIsSkipped(t *testing.T) {
	// The server proxy refuses with REFUSED_STREAM on its HTTP/2 fast path,
	// which cannot say why; else with a 502 marked Conduit-Proxy-Unsent,
	// whose reason the client's proxy quotes.
	const refusedStream = "refused the request unprocessed (a meshed pod's proxy does when its application does not accept the connection)"
	const marked = "inbound: connect to the application at "
	for _, mode := range []struct {
		name      string
		env       map[string]string
		clientEnv map[string]string // when not nil, the client proxy's (env is the server proxies')
		why       string
	}{
		{name: "HTTP/1 over one HTTP/2 connection", why: refusedStream},
		{name: "fast path off", env: map[string]string{"CONDUIT_PROXY_HTTP1_FAST_PATH": "false"}, why: refusedStream},
		{name: "HTTP/1.1 between proxies", env: map[string]string{"CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT": "http1"}, why: marked},
		{name: "net/http HTTP/2", env: map[string]string{"CONDUIT_PROXY_HTTP2_FAST_PATH": "false"}, why: marked},
		{name: "net/http HTTP/2 server side only", env: map[string]string{"CONDUIT_PROXY_HTTP2_FAST_PATH": "false"},
			clientEnv: map[string]string{}, why: marked},
	} {
		t.Run(mode.name, func(t *testing.T) {
			clientEnv := mode.env
			if mode.clientEnv != nil {
				clientEnv = mode.clientEnv
			}
			client, gone := oneAppStopped(t, mode.env, clientEnv)
			out := client.OutboundAddr().String()
			// A request to switch protocols (a WebSocket's) goes to
			// another endpoint too. (First: once the balancer has seen
			// the stopped endpoint fail, it rarely picks it.)
			for range 10 {
				c, _ := switchProtocols(t, out, "web.test", "")
				c.Close()
			}
			requestMix(t, out, "/s", 10)
			testGRPC(t, out)
			// With no other endpoint the request fails, and the error says why.
			resp, err := h1Client(out).Get("http://solo.test/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if pe := resp.Header.Get("Conduit-Proxy-Error"); resp.StatusCode != http.StatusBadGateway ||
				!strings.Contains(pe, "refused the request unprocessed") || !strings.Contains(pe, mode.why) {
				t.Errorf("the only endpoint's application stopped: %d %q, want 502 saying %q", resp.StatusCode, pe, mode.why)
			}
			if _, ok := resp.Header[netx.HeaderUnsent]; ok {
				t.Errorf("%s reached the client: it is between proxies", netx.HeaderUnsent)
			}
			// The stopped endpoint's proxy saw requests and failed them: it was
			// tried, so the test tested something.
			if n := metricSum(t, gone.AdminAddr().String(), "response_total", `direction="inbound"`); n == 0 {
				t.Error("the endpoint whose application stopped was never tried")
			}
		})
	}
}

// oneAppStopped starts the endpoints of web.test, two server proxies with
// env: one before the test application, and gone, whose application
// stopped (nothing listens where it forwards). solo.test's only endpoint
// is gone. It returns a client proxy (with clientEnv) and gone.
func oneAppStopped(t *testing.T, env, clientEnv map[string]string) (client, gone *app.Proxy) {
	t.Helper()
	m := newMesh(t)
	live := m.startProxyEnv(t, serverID, startApp(t).addr, "127.0.0.1:1", env, true)
	gone = m.startProxyEnv(t, serverID, refusingAddr(t), "127.0.0.1:1", env, true)
	m.mu.Lock()
	m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{
		meshedAddr(gone.InboundAddr().String(), serverID), meshedAddr(live.InboundAddr().String(), serverID)}
	m.endpoints["solo.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{meshedAddr(gone.InboundAddr().String(), serverID)}
	m.mu.Unlock()
	return m.startProxyEnv(t, clientID, "127.0.0.1:1", "10.255.255.1:80", clientEnv, true), gone
}

// requestMix sends, rounds times, an HTTP/1 GET, an HTTP/1 POST and an h2c
// POST to web.test through the outbound proxy at out; each must be
// answered by the test application.
func requestMix(t *testing.T, out, prefix string, rounds int) {
	t.Helper()
	h1, h2c := h1Client(out), h2cClient(out)
	for i := range rounds {
		for _, c := range []struct {
			name   string
			client *http.Client
			method string
			body   string
		}{
			{"HTTP/1 GET", h1, http.MethodGet, ""},
			{"HTTP/1 POST", h1, http.MethodPost, "12345"},
			{"h2c POST", h2c, http.MethodPost, "123"},
		} {
			path := fmt.Sprintf("%s%d", prefix, i)
			req, _ := http.NewRequest(c.method, "http://web.test"+path, strings.NewReader(c.body))
			if c.body == "" {
				req.Body = http.NoBody
			}
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatalf("round %d, %s: %v", i, c.name, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("hello %s %d", path, len(c.body)); resp.StatusCode != 200 || string(b) != want {
				t.Fatalf("round %d, %s: status %d %q (conduit-proxy-error %q), want 200 %q", i, c.name, resp.StatusCode, b,
					resp.Header.Get("Conduit-Proxy-Error"), want)
			}
		}
	}
}

// TestServiceDownCostsOneAttempt: when no endpoint of a Service answers,
// a request fails after one attempt (two for the first, which has yet to
// learn that the second is down too): rerouting adds no load to a Service
// that is down.
func TestServiceDownCostsOneAttempt(t *testing.T) {
	m := newMesh(t)
	var accepted atomic.Int64
	m.mu.Lock()
	m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{
		meshedAddr(closingAddr(t, &accepted), serverID), meshedAddr(closingAddr(t, &accepted), serverID)}
	m.mu.Unlock()
	client := m.startProxyEnv(t, clientID, "127.0.0.1:1", "10.255.255.1:80", nil, true)
	h1 := h1Client(client.OutboundAddr().String())
	const requests = 10
	start := time.Now()
	for i := range requests {
		resp, err := h1.Get("http://web.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("request %d: %d, want 502 (no endpoint answers)", i, resp.StatusCode)
		}
	}
	// Each endpoint Failing for balance.FailBackoff after its failure; a slow
	// run may see a backoff end, and one more attempt then.
	limit := int64(requests+1) + 2*int64(time.Since(start)/balance.FailBackoff)
	if n := accepted.Load(); n > limit {
		t.Errorf("%d requests made %d connection attempts, want at most %d", requests, n, limit)
	}
	t.Logf("%d requests, %d connection attempts", requests, accepted.Load())
}

// TestRefusedGRPCIsRetried: a gRPC call has a body of unknown length, which
// the HTTP/2 client does not keep, so the client's proxy cannot send one
// that a stopped application's proxy refused (REFUSED_STREAM) elsewhere
// itself. It refuses the call in turn, and gRPC's client sends it again
// (transparently: the call was not processed). That must reach the other
// endpoint: the refusing one is avoided as one that cannot be reached is
// (a refusal is fast, and peak-EWMA would otherwise send it most calls).
// Before either: 39 of these 40 calls failed.
func TestRefusedGRPCIsRetried(t *testing.T) {
	for _, mode := range []struct {
		name string
		env  map[string]string
		// maxFailed: with net/http's HTTP/2 server the client's proxy
		// cannot refuse the call in turn, so a call fails each time the
		// stopped endpoint is tried (then avoided for a second).
		maxFailed int
		// payload: a call above grpc-go's 256 KiB retry buffer is not
		// sent again by the application's client: the client's proxy
		// must send it to the other endpoint itself (h2's replayBody).
		// Before it did: 2 of these 40 failed, each time the stopped
		// endpoint was tried.
		payload int
	}{
		{name: "HTTP/2 fast path"},
		{name: "HTTP/2 fast path, 1 MiB calls", payload: 1 << 20},
		{name: "net/http HTTP/2", env: map[string]string{"CONDUIT_PROXY_HTTP2_FAST_PATH": "false"}, maxFailed: 2},
	} {
		t.Run(mode.name, func(t *testing.T) {
			client, gone := oneAppStopped(t, mode.env, mode.env)
			out := client.OutboundAddr().String()
			c := testgrpc.NewTestServiceClient(grpcConn(t, out))
			payload := []byte("ping")
			if mode.payload > 0 {
				payload = bytes.Repeat([]byte{'p'}, mode.payload)
			}
			const calls = 40
			failed := 0
			start := time.Now()
			for range calls {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: payload}})
				cancel()
				if err != nil {
					t.Logf("call failed: %v", err)
					failed++
				} else if mode.payload > 0 && len(resp.GetPayload().GetBody()) != mode.payload {
					t.Errorf("answer of %d bytes, want the %d sent echoed", len(resp.GetPayload().GetBody()), mode.payload)
				}
			}
			elapsed := time.Since(start)
			if failed > mode.maxFailed {
				t.Errorf("%d of %d calls failed in %s, want %d at most", failed, calls, elapsed.Round(time.Millisecond), mode.maxFailed)
			}
			refused := metricSum(t, gone.AdminAddr().String(), "response_total", `direction="inbound"`)
			if refused == 0 {
				t.Error("the endpoint whose application stopped was never tried")
			}
			t.Logf("%d of %d calls failed in %s; the stopped endpoint refused %v", failed, calls, elapsed.Round(time.Millisecond), refused)
		})
	}
}

// refusingAddr returns a loopback address where nothing listens any more:
// connections are refused.
func refusingAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// closingAddr returns the address of a listener that accepts every
// connection, counts it in accepted and closes it.
func closingAddr(t *testing.T, accepted *atomic.Int64) string {
	t.Helper()
	return serveTCP(t, func(net.Conn) { accepted.Add(1) })
}

// TestApplicationCannotForgeUnsent: an application's response that carries
// Conduit-Proxy-Unsent is its own answer, not a proxy's refusal: the request
// is not sent to another endpoint (it would run twice), and the mark does
// not reach the client.
func TestApplicationCannotForgeUnsent(t *testing.T) {
	for _, mode := range transportModes {
		t.Run(mode.name, func(t *testing.T) {
			m := newMesh(t)
			var served atomic.Int64
			forger := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				served.Add(1)
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set(netx.HeaderUnsent, "1")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = io.WriteString(w, "the application's own 502")
			})
			a := m.startProxyEnv(t, serverID, startHandler(t, forger), "127.0.0.1:1", mode.env, true)
			b := m.startProxyEnv(t, serverID, startHandler(t, forger), "127.0.0.1:1", mode.env, true)
			m.mu.Lock()
			m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{
				meshedAddr(a.InboundAddr().String(), serverID), meshedAddr(b.InboundAddr().String(), serverID)}
			m.mu.Unlock()
			client := m.startProxyEnv(t, clientID, "127.0.0.1:1", "10.255.255.1:80", mode.env, true)
			out := client.OutboundAddr().String()
			sent := int64(0)
			for _, c := range []*http.Client{h1Client(out), h2cClient(out)} {
				for range 5 {
					resp, err := c.Post("http://web.test/", "text/plain", strings.NewReader("once"))
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					sent++
					if resp.StatusCode != http.StatusBadGateway || string(body) != "the application's own 502" {
						t.Errorf("%s: %d %q, want the application's 502", resp.Proto, resp.StatusCode, body)
					}
					if _, ok := resp.Header[netx.HeaderUnsent]; ok {
						t.Errorf("%s: %s reached the client", resp.Proto, netx.HeaderUnsent)
					}
				}
			}
			if n := served.Load(); n != sent {
				t.Errorf("the applications served %d requests for %d sent: a request ran more than once", n, sent)
			}
		})
	}
}

// TestUnmeshedDeadEndpointIsSkipped: an endpoint without a proxy (no
// identity) where nothing listens is skipped as a meshed one is: HTTP/1,
// h2c and Upgrade requests go to the endpoint that answers, with the HTTP/1
// fast path on and off.
func TestUnmeshedDeadEndpointIsSkipped(t *testing.T) {
	for _, mode := range []struct {
		name string
		env  map[string]string
	}{
		{name: "fast path"},
		{name: "fast path off", env: map[string]string{"CONDUIT_PROXY_HTTP1_FAST_PATH": "false"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			m := newMesh(t)
			app := startApp(t)
			m.mu.Lock()
			m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{plainAddr(refusingAddr(t)), plainAddr(app.addr)}
			m.mu.Unlock()
			client := m.startProxyEnv(t, clientID, "127.0.0.1:1", "10.255.255.1:80", mode.env, true)
			out := client.OutboundAddr().String()
			// Upgrades first: once the balancer has seen the dead
			// endpoint fail, it rarely picks it.
			for range 10 {
				c, _ := switchProtocols(t, out, "web.test", "")
				c.Close()
			}
			requestMix(t, out, "/u", 10)
			if n := metricSum(t, client.AdminAddr().String(), "response_total", `direction="outbound"`, `classification="failure"`); n < 1 {
				t.Error("the dead endpoint was never tried")
			}
		})
	}
}

// plainAddr is an endpoint without a proxy: no identity, no protocol hint.
func plainAddr(addr string) *destinationv1.WeightedAddr {
	a := meshedAddr(addr, "")
	a.TlsIdentity, a.ProtocolHint = nil, nil
	return a
}
