package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/app"
	"github.com/conduit-mesh/conduit/proxy/config"
)

func needIPv6(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 on this host: %v", err)
	}
	_ = l.Close()
}

// at is addr's port on host.
func at(host string, addr net.Addr) string {
	return net.JoinHostPort(host, strconv.Itoa(addr.(*net.TCPAddr).Port))
}

// TestDualStackListeners: the proxy's inbound, outbound and admin listeners
// take IPv6 connections at the port of their IPv4 address (what
// proxy-init's ip6tables rules redirect to: ::1 for outbound, the pod's
// address for inbound), and the mesh works over them: a request on the
// client proxy's [::1] outbound listener goes over mTLS to the server
// proxy's [::1] inbound listener. With CONDUIT_PROXY_IPV6=off, or with the
// listeners configured on IPv6, each family is as configured.
func TestDualStackListeners(t *testing.T) {
	needIPv6(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		// host of the twin listeners, "" for none
		twin string
		// host the endpoint is reached at
		endpoint string
	}{
		{name: "IPv4 configured, IPv6 twin", twin: "::1", endpoint: "::1"},
		{name: "IPv6 configured, IPv4 twin", env: map[string]string{
			"CONDUIT_PROXY_INBOUND_LISTEN_ADDR": "[::1]:0", "CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR": "[::1]:0", "CONDUIT_PROXY_ADMIN_LISTEN_ADDR": "[::1]:0",
		}, twin: "127.0.0.1", endpoint: "::1"},
		{name: "on", env: map[string]string{"CONDUIT_PROXY_IPV6": "on"}, twin: "::1", endpoint: "::1"},
		{name: "off", env: map[string]string{"CONDUIT_PROXY_IPV6": "off"}, endpoint: "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(t)
			appAddr := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
			server := m.startProxyEnv(t, serverID, appAddr, "127.0.0.1:1", tc.env, true)
			m.mu.Lock()
			m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{meshedAddr(at(tc.endpoint, server.InboundAddr()), serverID)}
			m.mu.Unlock()
			client := m.startProxyEnv(t, clientID, "127.0.0.1:1", "10.255.255.1:80", tc.env, true)

			get := func(dial, url string) (string, error) {
				hc := h1Client(dial)
				defer hc.CloseIdleConnections()
				hc.Timeout = 5 * time.Second
				resp, err := hc.Get(url)
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return strconv.Itoa(resp.StatusCode) + " " + string(b), err
			}
			type check struct{ name, dial, url, want string }
			checks := []check{
				{"outbound", client.OutboundAddr().String(), "http://web/", "200 ok"},
				{"inbound", server.InboundAddr().String(), "http://web/", "200 ok"},
				{"admin", client.AdminAddr().String(), "http://admin/live", "200 "},
			}
			if tc.twin != "" {
				checks = append(checks,
					check{"outbound twin", at(tc.twin, client.OutboundAddr()), "http://web/", "200 ok"},
					check{"inbound twin", at(tc.twin, server.InboundAddr()), "http://web/", "200 ok"},
					check{"admin twin", at(tc.twin, client.AdminAddr()), "http://admin/live", "200 "})
			}
			for _, c := range checks {
				got, err := get(c.dial, c.url)
				if err != nil || !strings.HasPrefix(got, c.want) {
					t.Errorf("%s (%s): %q %v, want %q", c.name, c.dial, got, err, c.want)
				}
			}
			if tc.twin == "" {
				for _, addr := range []net.Addr{client.OutboundAddr(), client.InboundAddr(), client.AdminAddr()} {
					if c, err := net.DialTimeout("tcp", at("::1", addr), time.Second); err == nil {
						c.Close()
						t.Errorf("CONDUIT_PROXY_IPV6=off, yet [::1] at %s accepts", addr)
					}
				}
			}
		})
	}
}

// TestWithoutIPv6: on a host without IPv6 the proxy starts on IPv4 alone
// and says so once; with CONDUIT_PROXY_IPV6=on it refuses to start.
func TestWithoutIPv6(t *testing.T) {
	m := newMesh(t)
	noIPv6 := func() error { return errors.New("socket: address family not supported by protocol") }
	for _, tc := range []struct {
		name, mode string
		wantErr    string
	}{
		{name: "auto", mode: "auto"},
		{name: "on", mode: "on", wantErr: "proxy: CONDUIT_PROXY_IPV6=on but the host has no usable IPv6: socket: address family not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{
				"CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR":   "127.0.0.1:0",
				"CONDUIT_PROXY_INBOUND_LISTEN_ADDR":    "0.0.0.0:0",
				"CONDUIT_PROXY_ADMIN_LISTEN_ADDR":      "127.0.0.1:0",
				"CONDUIT_PROXY_DESTINATION_ADDR":       m.dest,
				"CONDUIT_PROXY_IDENTITY_ADDR":          m.identity,
				"CONDUIT_PROXY_IDENTITY_NAME":          clientID,
				"CONDUIT_PROXY_IDENTITY_TOKEN_FILE":    m.tokenFile,
				"CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS": string(m.anchorsPEM),
				"CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD":  "1s",
				"CONDUIT_PROXY_IPV6":                   tc.mode,
				"CONDUIT_PROXY_CLUSTER_NETWORKS":       loopbackNetworks,
			}
			cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p, err := app.Start(ctx, cfg, slog.New(slog.NewTextHandler(&log, nil)), app.Overrides{IPv6Probe: noIPv6})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Start: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); _ = p.Wait(ctx) }()
			if n := strings.Count(log.String(), `msg="no IPv6 on this host: listening on IPv4 only" err="socket: address family not supported by protocol"`); n != 1 {
				t.Errorf("logged %d times that IPv6 is missing, want once:\n%s", n, log.String())
			}
			if !strings.Contains(log.String(), "inbound=0.0.0.0:") || strings.Contains(log.String(), "[::") {
				t.Errorf("the proxy listens on IPv6:\n%s", log.String())
			}
			if c, err := net.DialTimeout("tcp", p.OutboundAddr().String(), time.Second); err != nil {
				t.Errorf("outbound: %v", err)
			} else {
				c.Close()
			}
		})
	}
}
