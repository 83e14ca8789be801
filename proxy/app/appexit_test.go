package app_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/app"
	"github.com/conduit-mesh/conduit/proxy/internal/appsockets"
)

// fakeApp stands for the application's sockets in /proc/net.
type fakeApp struct {
	mu    sync.Mutex
	socks []appsockets.Socket
	err   error
}

func (a *fakeApp) held() ([]appsockets.Socket, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.socks, a.err
}

func (a *fakeApp) exit() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.socks = nil
}

// TestWaitForAppExit: on SIGTERM (its context ending) a proxy with
// CONDUIT_PROXY_WAIT_FOR_APP_EXIT keeps serving, inbound and outbound, while
// the application holds sockets: a request the application makes while it
// stops still goes through the mesh. It drains as soon as the application
// has exited, when the wait's limit is reached, or on POST /shutdown; at once
// when the setting is 0, when the application holds no socket, or when
// /proc/net cannot be read.
func TestWaitForAppExit(t *testing.T) {
	sock := []appsockets.Socket{{Proto: "tcp", UID: 1000, State: 0x0A}}
	for _, tc := range []struct {
		name  string
		wait  string
		socks []appsockets.Socket // the app's, at SIGTERM
		err   error               // reading /proc/net fails
		event string              // at 400 ms: "exit" (the app's sockets close), "shutdown" (POST /shutdown) or ""
		serve bool                // the proxy still serves 300 ms after SIGTERM
		done  time.Duration       // Wait has returned by then (and not before 400 ms when serving)
	}{
		{name: "the app exits", wait: "10s", socks: sock, event: "exit", serve: true, done: 1500 * time.Millisecond},
		{name: "shutdown ends the wait", wait: "10s", socks: sock, event: "shutdown", serve: true, done: 1500 * time.Millisecond},
		{name: "the limit", wait: "700ms", socks: sock, serve: true, done: 2 * time.Second},
		{name: "off", wait: "0s", socks: sock, done: time.Second},
		{name: "no app sockets", wait: "10s", done: time.Second},
		{name: "/proc unreadable", wait: "10s", socks: sock, err: errors.New("no /proc"), done: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(t)
			appAddr := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
			env := map[string]string{"CONDUIT_PROXY_WAIT_FOR_APP_EXIT": tc.wait}
			fake := &fakeApp{socks: tc.socks, err: tc.err}
			server, stopServer := m.startProxyCtl(t, serverID, appAddr, "127.0.0.1:1", env, true, app.Overrides{AppSockets: fake.held})
			m.mu.Lock()
			m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{meshedAddr(server.InboundAddr().String(), serverID)}
			m.mu.Unlock()
			client, stopClient := m.startProxyCtl(t, clientID, "127.0.0.1:1", "10.255.255.1:80", env, true, app.Overrides{AppSockets: fake.held})
			out := client.OutboundAddr().String()
			get := func() error {
				// A new connection each time, as an application stopping
				// may open: the listener must still accept.
				hc := h1Client(out)
				defer hc.CloseIdleConnections()
				resp, err := hc.Get("http://web/")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(body) != "ok" {
					return errors.New(resp.Status + ": " + string(body))
				}
				return nil
			}
			if err := get(); err != nil {
				t.Fatalf("before SIGTERM: %v", err)
			}
			m.mu.Lock()
			waited := []chan struct{}{m.waited[client], m.waited[server]}
			m.mu.Unlock()

			start := time.Now()
			stopClient()
			stopServer()
			time.Sleep(300 * time.Millisecond)
			err := get()
			if tc.serve && err != nil {
				t.Errorf("a request through both proxies 300 ms after their SIGTERM, the app still running: %v", err)
			}
			if !tc.serve && err == nil {
				t.Errorf("a request through both proxies 300 ms after their SIGTERM was served; want them drained")
			}
			if tc.serve {
				if c, err := net.DialTimeout("tcp", server.InboundAddr().String(), time.Second); err != nil {
					t.Errorf("the server proxy's inbound refuses connections while the app runs: %v", err)
				} else {
					c.Close()
				}
			}
			time.Sleep(100 * time.Millisecond)
			switch tc.event {
			case "exit":
				fake.exit()
			case "shutdown":
				client.Shutdown()
				server.Shutdown()
			}
			for i, w := range waited {
				select {
				case <-w:
				case <-time.After(tc.done - time.Since(start)):
					t.Fatalf("proxy %d still serving %v after SIGTERM", i, time.Since(start))
				}
			}
			took := time.Since(start)
			if tc.serve && took < 400*time.Millisecond {
				t.Errorf("drained after %v, before the app exited", took)
			}
			if tc.name == "the limit" && took < 700*time.Millisecond {
				t.Errorf("drained after %v, before the wait's limit (700 ms)", took)
			}
			if c, err := net.DialTimeout("tcp", out, time.Second); err == nil {
				c.Close()
				t.Errorf("the client proxy's outbound accepts connections after its drain")
			}
		})
	}
}
