package app_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/app"
)

// TestIdleTargetDuringOutage: a target whose discovery streams were closed
// for lack of use is still reached, with mTLS, while the control plane is
// down, through what the destination service said of it before; with
// CONDUIT_PROXY_DISCOVERY_LAST_KNOWN_MAX_AGE=0s it is refused (503).
func TestIdleTargetDuringOutage(t *testing.T) {
	const idle = 400 * time.Millisecond
	m := newMesh(t)
	appAddr := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("conduit-client-id"))
	}))
	env := map[string]string{"CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT": idle.String(), "CONDUIT_PROXY_DISCOVERY_TIMEOUT": "300ms"}
	client, _ := m.twoProxies(t, appAddr, env)
	env["CONDUIT_PROXY_DISCOVERY_LAST_KNOWN_MAX_AGE"] = "0s"
	control := m.startProxyEnv(t, clientID, "127.0.0.1:1", "10.255.255.1:80", env, true)
	get := func(p *app.Proxy) (int, string, error) { return getThrough(p, "http://web.test/") }
	gets := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.gets["web.test.svc.cluster.local:80"]
	}
	for _, p := range []*app.Proxy{client, control} {
		if code, body, err := get(p); err != nil || code != 200 || body != clientID {
			t.Fatalf("before: %d %q %v", code, body, err)
		}
	}
	// Each proxy's streams are closed once idle: the next request opens
	// new ones.
	before := gets()
	time.Sleep(3 * idle)
	for _, p := range []*app.Proxy{client, control} {
		if code, body, err := get(p); err != nil || code != 200 || body != clientID {
			t.Fatalf("after the idle timeout: %d %q %v", code, body, err)
		}
	}
	if got := gets(); got != before+2 {
		t.Fatalf("%d Get streams opened after the idle timeout, want 2 (one per proxy)", got-before)
	}
	time.Sleep(3 * idle) // closed again
	for _, stop := range m.stops {
		stop() // identity and destination both gone
	}
	if code, body, err := get(client); err != nil || code != 200 || body != clientID {
		t.Errorf("idle target, control plane down: %d %q %v, want 200 with mTLS (%s)", code, body, err, clientID)
	}
	// The client's proxy says it serves what discovery no longer confirms.
	b := scrape(t, client.AdminAddr().String())
	// One endpoint set (web.test's) and its profile, with the original
	// destination's.
	for _, want := range []string{"discovery_unreachable 1\n", `discovery_stale{kind="endpoints"} 1` + "\n", `discovery_stale{kind="profile"} 2` + "\n"} {
		if !strings.Contains(b, want) {
			t.Errorf("client proxy's metrics have no %q:\n%s", want, b)
		}
	}
	if code, _, err := get(control); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("idle target, control plane down, nothing kept: %d %v, want 503", code, err)
	}
}

// TestControlPlaneDownAndDrain: with the control plane gone, known endpoints
// keep serving; on shutdown, an in-flight request completes and new
// connections are refused.
func TestControlPlaneDownAndDrain(t *testing.T) {
	m := newMesh(t)
	appAddr := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(400 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	}))
	client, _ := m.twoProxies(t, appAddr, nil)
	hc := h1Client(client.OutboundAddr().String())
	get := func(path string) (int, error) {
		resp, err := hc.Get("http://web" + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.ReadAll(resp.Body)
		return resp.StatusCode, nil
	}
	if code, err := get("/"); err != nil || code != 200 {
		t.Fatalf("before: %d %v", code, err)
	}
	for _, stop := range m.stops {
		stop() // identity and destination both gone
	}
	for i := 0; i < 5; i++ {
		// New connections each time: nothing cached in the client's pool.
		hc.CloseIdleConnections()
		if code, err := get("/"); err != nil || code != 200 {
			t.Fatalf("control plane down, request %d: %d %v", i, code, err)
		}
	}

	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() { c, err := get("/slow"); done <- result{c, err} }()
	time.Sleep(100 * time.Millisecond)
	client.Shutdown()
	time.Sleep(50 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", client.OutboundAddr().String(), time.Second); err == nil {
		c.Close()
		t.Error("outbound still accepts connections while draining")
	}
	r := <-done
	if r.err != nil || r.code != 200 {
		t.Errorf("in-flight request during drain: %d %v", r.code, r.err)
	}
}

// TestServerProxyDrainHTTP2: the server proxy drains the HTTP/2 connection
// from the client proxy on shutdown. Requests in flight on it (an HTTP/1
// request carried over HTTP/2, and an h2c one) complete; once it has gone,
// a new request is answered with an error, not left hanging.
func TestServerProxyDrainHTTP2(t *testing.T) {
	m := newMesh(t)
	arrived := make(chan struct{}, 4)
	appAddr := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			time.Sleep(400 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	}))
	client, server := m.twoProxies(t, appAddr, nil)
	out := client.OutboundAddr().String()
	clients := map[string]*http.Client{"HTTP/1 over h2": h1Client(out), "h2c": h2cClient(out)}
	get := func(c *http.Client, path string) (int, error) {
		resp, err := c.Get("http://web.test:80" + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if _, err := io.ReadAll(resp.Body); err != nil {
			return 0, err
		}
		return resp.StatusCode, nil
	}
	for name, c := range clients {
		if code, err := get(c, "/"); err != nil || code != 200 {
			t.Fatalf("%s before: %d %v", name, code, err)
		}
	}
	type result struct {
		name string
		code int
		err  error
	}
	done := make(chan result, len(clients))
	for name, c := range clients {
		go func() { code, err := get(c, "/slow"); done <- result{name, code, err} }()
	}
	for range clients {
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("the slow requests did not reach the app")
		}
	}
	server.Shutdown()
	for range clients {
		r := <-done
		if r.err != nil || r.code != 200 {
			t.Errorf("%s in flight during the server proxy's drain: %d %v", r.name, r.code, r.err)
		}
	}
	// The server proxy is gone: a new request fails fast with a proxy error.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, err := get(clients["h2c"], "/")
		if err == nil && code >= 500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the server proxy stopped: %d %v, want a 5xx from the client proxy", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDrainWaitsForSwitchedConnections: a connection that switched protocols
// (an Upgrade, as a WebSocket does) keeps the client's or the server's proxy
// draining until the application closes it, or until the grace period (2 s
// here) ends and the proxy closes it. net/http forgets a hijacked
// connection, so a proxy that only waited for net/http exited at once, under
// a WebSocket whose application was about to close it cleanly.
func TestDrainWaitsForSwitchedConnections(t *testing.T) {
	for _, tc := range []struct {
		proxy string // the one shut down
		end   string // how the switched connection ends
	}{
		{"client", "the app closes"},
		{"server", "the app closes"},
		{"client", "the grace period ends"},
		{"server", "the grace period ends"},
	} {
		t.Run(tc.proxy+"/"+tc.end, func(t *testing.T) {
			m := newMesh(t)
			appConns := make(chan net.Conn, 1)
			appAddr := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				echoSwitched(w, func(c net.Conn) { appConns <- c })
			}))
			client, server := m.twoProxies(t, appAddr, nil)
			c, br := switchProtocols(t, client.OutboundAddr().String(), "web", "")
			defer c.Close()
			appConn := <-appConns
			p := map[string]*app.Proxy{"client": client, "server": server}[tc.proxy]
			m.mu.Lock()
			waited := m.waited[p]
			m.mu.Unlock()
			start := time.Now()
			p.Shutdown()
			time.Sleep(300 * time.Millisecond)
			select {
			case <-waited:
				t.Fatalf("the %s proxy finished draining after %v with a switched connection open", tc.proxy, time.Since(start))
			default:
			}
			if err := echoes(c, br, "during the drain"); err != nil {
				t.Fatalf("switched connection during the drain: %v", err)
			}
			if tc.end == "the app closes" {
				_, _ = io.WriteString(appConn, "bye")
				_ = appConn.Close()
			}
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("reading to the end: %v (got %q)", err, rest)
			}
			select {
			case <-waited:
			case <-time.After(5 * time.Second):
				t.Fatalf("the %s proxy still draining 5 s after the end", tc.proxy)
			}
			took := time.Since(start)
			switch tc.end {
			case "the app closes":
				if string(rest) != "bye" {
					t.Errorf("the app's last words: %q, want \"bye\"", rest)
				}
				if took > 1500*time.Millisecond {
					t.Errorf("drained in %v: it did not end when the app closed (at 0.3 s)", took)
				}
			default:
				if took < 1900*time.Millisecond {
					t.Errorf("drained in %v, before the 2 s grace period", took)
				}
			}
			t.Logf("drained in %v", took.Round(time.Millisecond))
		})
	}
}

// TestOutsideClusterNetworks: a connection to an address outside the
// cluster networks goes there without a discovery lookup, so it is served
// during a control-plane outage too, where an address inside them that
// discovery never answered for is refused (503): the proxy cannot tell
// whether that one is meshed. The requests' Host, example.test, reads as
// Service example of namespace test: the address decides, not the name.
func TestOutsideClusterNetworks(t *testing.T) {
	m := newMesh(t)
	appAddr := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "direct")
	}))
	// Both proxies send to the application, 127.0.0.1:<port>; each keeps
	// nothing of a target its streams were closed for, so that only the
	// cluster networks tell them apart.
	env := map[string]string{
		"CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT":       "300ms",
		"CONDUIT_PROXY_DISCOVERY_LAST_KNOWN_MAX_AGE": "0s",
		"CONDUIT_PROXY_DISCOVERY_TIMEOUT":            "300ms",
		"CONDUIT_PROXY_CLUSTER_NETWORKS":             "10.0.0.0/8,fc00::/7",
	}
	outside := m.startProxyEnv(t, clientID, "127.0.0.1:1", appAddr, env, true)
	env["CONDUIT_PROXY_CLUSTER_NETWORKS"] = loopbackNetworks
	inside := m.startProxyEnv(t, clientID, "127.0.0.1:1", appAddr, env, true)
	get := func(p *app.Proxy) (int, string, error) { return getThrough(p, "http://example.test/") }
	lookups := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.profGets[appAddr]
	}
	if code, body, err := get(outside); err != nil || code != 200 || body != "direct" {
		t.Fatalf("outside the cluster networks: %d %q %v", code, body, err)
	}
	if n := lookups(); n != 0 {
		t.Fatalf("%d profile lookups of %s by a proxy it is outside the cluster networks of, want 0", n, appAddr)
	}
	if code, body, err := get(inside); err != nil || code != 200 || body != "direct" {
		t.Fatalf("inside the cluster networks: %d %q %v", code, body, err)
	}
	if n := lookups(); n != 1 {
		t.Fatalf("%d profile lookups of %s by a proxy it is inside the cluster networks of, want 1", n, appAddr)
	}
	time.Sleep(time.Second) // the inside proxy's streams closed, their state dropped
	for _, stop := range m.stops {
		stop()
	}
	if code, body, err := get(outside); err != nil || code != 200 || body != "direct" {
		t.Errorf("outside the cluster networks, control plane down: %d %q %v, want 200", code, body, err)
	}
	if code, _, err := get(inside); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("inside the cluster networks, control plane down, never answered for: %d %v, want 503", code, err)
	}
}

// getThrough GETs url through p's outbound on a new connection and returns
// the status and body.
func getThrough(p *app.Proxy, url string) (int, string, error) {
	hc := h1Client(p.OutboundAddr().String())
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
