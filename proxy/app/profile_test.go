package app_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
)

func startHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true) // h2c too, for gRPC-like requests
	srv := &http.Server{Handler: h, Protocols: &protos}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// serveTCP is servetest.TCP, the connection closed once handle returns,
// with the address as a string.
func serveTCP(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	return servetest.TCP(t, func(c net.Conn) {
		defer c.Close()
		handle(c)
	}).String()
}

func route(name, method, path string, retryable bool, timeout time.Duration) *destinationv1.Route {
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

func TestProfilesRetriesTimeoutsSplit(t *testing.T) {
	m := newMesh(t)
	var calls atomic.Int64
	v1 := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			// Every other call fails.
			if calls.Add(1)%2 == 1 {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			body, _ := io.ReadAll(r.Body)
			io.WriteString(w, "ok "+string(body))
		case "/slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			io.WriteString(w, "late")
		default:
			io.WriteString(w, "v1")
		}
	}))
	v2 := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "v2") }))
	s1 := m.startProxy(t, serverID, v1, "127.0.0.1:1")
	s2 := m.startProxy(t, "web-v2.test.serviceaccount.identity.conduit.cluster.local", v2, "127.0.0.1:1")
	m.mu.Lock()
	m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{meshedAddr(s1.InboundAddr().String(), serverID)}
	m.endpoints["web-v2.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{meshedAddr(s2.InboundAddr().String(), "web-v2.test.serviceaccount.identity.conduit.cluster.local")}
	m.profiles["web.test.svc.cluster.local:80"] = &destinationv1.DestinationProfile{
		FullyQualifiedName: "web.test.svc.cluster.local",
		Routes: []*destinationv1.Route{
			route("flaky-get", "GET", "/flaky", true, 0),
			route("flaky-post", "POST", "/flaky", true, 0),
			route("flaky-put", "PUT", "/flaky", false, 0),
			route("slow", "GET", "/slow", false, 100*time.Millisecond),
		},
		RetryBudget: &destinationv1.RetryBudget{RetryRatio: 1, MinRetriesPerSecond: 10, Ttl: durationpb.New(10 * time.Second)},
	}
	m.profiles["split.test.svc.cluster.local:80"] = &destinationv1.DestinationProfile{
		FullyQualifiedName: "split.test.svc.cluster.local",
		DstOverrides: []*destinationv1.WeightedDst{
			{Authority: "web.test.svc.cluster.local:80", Weight: 1},
			{Authority: "web-v2.test.svc.cluster.local:80", Weight: 3},
		},
	}
	m.endpoints["split.test.svc.cluster.local:80"] = m.endpoints["web.test.svc.cluster.local:80"]
	m.mu.Unlock()
	client := m.startProxy(t, clientID, "127.0.0.1:1", "10.255.255.1:80")
	hc := h1Client(client.OutboundAddr().String())

	do := func(method, url, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("retryable GET is retried", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			if code, body := do("GET", "http://web/flaky", ""); code != 200 || body != "ok " {
				t.Fatalf("try %d: %d %q", i, code, body)
			}
		}
	})
	t.Run("retryable POST replays its body", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			if code, body := do("POST", "http://web/flaky", "payload"); code != 200 || body != "ok payload" {
				t.Fatalf("try %d: %d %q", i, code, body)
			}
		}
	})
	t.Run("non-retryable route fails through", func(t *testing.T) {
		failures := 0
		for i := 0; i < 4; i++ {
			if code, _ := do("PUT", "http://web/flaky", "x"); code == 500 {
				failures++
			}
		}
		if failures != 2 {
			t.Errorf("%d of 4 failed, want 2 (every other call)", failures)
		}
	})
	t.Run("route timeout", func(t *testing.T) {
		start := time.Now()
		code, _ := do("GET", "http://web/slow", "")
		if code != http.StatusGatewayTimeout {
			t.Errorf("status %d, want 504", code)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("took %v, timeout is 100ms", d)
		}
	})
	t.Run("traffic split", func(t *testing.T) {
		counts := map[string]int{}
		for i := 0; i < 200; i++ {
			_, body := do("GET", "http://split.test/", "")
			counts[body]++
		}
		if counts["v2"] < 120 || counts["v1"] < 20 || counts["v1"]+counts["v2"] != 200 {
			t.Errorf("split 1:3 gave %v", counts)
		}
	})

	text := scrape(t, client.AdminAddr().String())
	for _, want := range []string{`route="flaky-get"`, `route="slow"`, `classification="failure",status_code="500"`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestRouteTimeoutSparesSwitchedConnections: a route's timeout bounds the
// wait for the answer to an Upgrade, not the connection that switched
// protocols (a WebSocket outlives it).
func TestRouteTimeoutSparesSwitchedConnections(t *testing.T) {
	m := newMesh(t)
	app := startApp(t)
	m.mu.Lock()
	m.profiles["web.test.svc.cluster.local:80"] = &destinationv1.DestinationProfile{
		FullyQualifiedName: "web.test.svc.cluster.local",
		Routes:             []*destinationv1.Route{route("up", "GET", "/up", false, 200*time.Millisecond)},
	}
	m.mu.Unlock()
	client, _ := m.twoProxies(t, app.addr, nil)
	c, br := switchProtocols(t, client.OutboundAddr().String(), "web.test", "")
	defer c.Close()
	time.Sleep(600 * time.Millisecond)
	if err := echoes(c, br, "pong"); err != nil {
		t.Fatalf("600 ms after the switch, on a route with a 200 ms timeout: %v", err)
	}
	// The route was the one matched.
	if n := metricSum(t, client.AdminAddr().String(), "request_total", `route="up"`); n != 1 {
		t.Errorf("request_total{route=\"up\"} = %v, want 1", n)
	}
}
