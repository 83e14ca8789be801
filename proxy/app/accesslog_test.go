package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/app"
)

// TestAccessLog: with CONDUIT_PROXY_ACCESS_LOG=json each proxy writes one
// line per request, the client proxy's outbound with the server's identity,
// the server proxy's inbound with the client's, both with the method,
// authority, path, status and size; requests that fail are logged too.
func TestAccessLog(t *testing.T) {
	m := newMesh(t)
	appAddr := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "hello")
	}))
	env := map[string]string{"CONDUIT_PROXY_ACCESS_LOG": "json"}
	// Each proxy's access log goes to a file of its own, read once it has
	// stopped.
	logFile := func(name string) *os.File {
		f, err := os.Create(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	clientLog, serverLog := logFile("client.log"), logFile("server.log")
	server, stopServer := m.startProxyCtl(t, serverID, appAddr, "127.0.0.1:1", env, true, app.Overrides{AccessLog: serverLog})
	m.mu.Lock()
	m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{meshedAddr(server.InboundAddr().String(), serverID)}
	m.mu.Unlock()
	client, stopClient := m.startProxyCtl(t, clientID, "127.0.0.1:1", "10.255.255.1:80", env, true, app.Overrides{AccessLog: clientLog})
	hc := h1Client(client.OutboundAddr().String())
	for _, path := range []string{"/books?id=1", "/missing"} {
		resp, err := hc.Get("http://web" + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// The lines are written by the access log's goroutine; the proxies'
	// drain flushes them.
	m.mu.Lock()
	waited := []chan struct{}{m.waited[client], m.waited[server]}
	m.mu.Unlock()
	stopClient()
	stopServer()
	for _, w := range waited {
		<-w
	}

	parse := func(name string, f *os.File) []map[string]any {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			var e map[string]any
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("%s: not JSON: %q", name, l)
			}
			out = append(out, e)
		}
		return out
	}
	check := func(name string, lines []map[string]any, want map[string]any) {
		t.Helper()
		if len(lines) != 2 {
			t.Fatalf("%s: %d lines, want 2: %v", name, len(lines), lines)
		}
		for i, st := range []float64{200, 404} {
			l := lines[i]
			for k, v := range want {
				if l[k] != v {
					t.Errorf("%s line %d: %s = %v, want %v (%v)", name, i, k, l[k], v, l)
				}
			}
			if l["status"] != st || l["msg"] != "access" || l["method"] != "GET" {
				t.Errorf("%s line %d: %v", name, i, l)
			}
		}
		if lines[0]["path"] != "/books" || lines[0]["response_bytes"] != 5.0 || lines[1]["path"] != "/missing" {
			t.Errorf("%s: paths and sizes: %v", name, lines)
		}
	}
	check("client proxy", parse("client proxy", clientLog),
		map[string]any{"direction": "outbound", "server_id": serverID, "tls": true, "authority": "web.test.svc.cluster.local:80"})
	check("server proxy", parse("server proxy", serverLog),
		map[string]any{"direction": "inbound", "client_id": clientID, "tls": true})
}
