package app_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

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
