package app_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
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
	server := m.startProxy(t, serverID, appAddr, "127.0.0.1:1")
	m.mu.Lock()
	m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{meshedAddr(server.InboundAddr().String(), serverID)}
	m.mu.Unlock()
	client := m.startProxy(t, clientID, "127.0.0.1:1", "10.255.255.1:80")
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
