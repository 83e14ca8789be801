package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/pkg/ports"
)

func anchors(t *testing.T) string {
	t.Helper()
	root, err := pki.NewRoot("root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return string(pki.CertPEM(root.Cert))
}

func TestLoad(t *testing.T) {
	pem := anchors(t)
	base := map[string]string{
		"CONDUIT_PROXY_IDENTITY_NAME":          "web.ns.serviceaccount.identity.conduit.cluster.local",
		"CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS": pem,
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring; empty means success
		check   func(*testing.T, *Config)
	}{
		{name: "defaults", check: func(t *testing.T, c *Config) {
			if c.InboundAddr != "0.0.0.0:4143" || c.OutboundAddr != "127.0.0.1:4140" || c.AdminAddr != "0.0.0.0:4191" {
				t.Errorf("listen addrs %s %s %s", c.InboundAddr, c.OutboundAddr, c.AdminAddr)
			}
			if c.IPv6 != IPv6Auto {
				t.Errorf("IPv6 %q, want auto", c.IPv6)
			}
			if c.ShutdownGrace != 30*time.Second || !ports.Contains(c.InboundOpaquePorts, 3306) || !ports.Contains(c.InboundOpaquePorts, 25) || ports.Contains(c.InboundOpaquePorts, 80) {
				t.Errorf("grace %v opaque %v", c.ShutdownGrace, c.InboundOpaquePorts)
			}
			if c.DiscoveryIdleTimeout != 5*time.Minute || c.DiscoveryLastKnownMaxAge != time.Hour {
				t.Errorf("discovery idle timeout %v, last known max age %v", c.DiscoveryIdleTimeout, c.DiscoveryLastKnownMaxAge)
			}
			if fmt.Sprint(c.ClusterNetworks) != "[10.0.0.0/8 100.64.0.0/10 172.16.0.0/12 192.168.0.0/16 fc00::/7]" {
				t.Errorf("cluster networks %v", c.ClusterNetworks)
			}
			if c.IdentityServerName != "conduit-identity.conduit.serviceaccount.identity.conduit.cluster.local" {
				t.Errorf("identity server name %q", c.IdentityServerName)
			}
		}},
		{name: "context gives namespace", env: map[string]string{"CONDUIT_PROXY_DESTINATION_CONTEXT": `{"ns":"emojivoto","pod":"web-0"}`},
			check: func(t *testing.T, c *Config) {
				if c.PodNamespace != "emojivoto" || c.PodName != "web-0" {
					t.Errorf("ns %q pod %q", c.PodNamespace, c.PodName)
				}
			}},
		{name: "opaque ports empty disables", env: map[string]string{"CONDUIT_PROXY_INBOUND_OPAQUE_PORTS": ""},
			check: func(t *testing.T, c *Config) {
				if len(c.InboundOpaquePorts) != 0 {
					t.Errorf("opaque %v", c.InboundOpaquePorts)
				}
			}},
		{name: "plaintext identity on loopback", env: map[string]string{"CONDUIT_PROXY_IDENTITY_SERVER_NAME": "", "CONDUIT_PROXY_IDENTITY_ADDR": "127.0.0.1:8080"},
			check: func(t *testing.T, c *Config) {
				if c.IdentityServerName != "" {
					t.Errorf("server name %q", c.IdentityServerName)
				}
			}},
		{name: "plaintext identity off loopback", env: map[string]string{"CONDUIT_PROXY_IDENTITY_SERVER_NAME": ""}, wantErr: "CONDUIT_PROXY_IDENTITY_SERVER_NAME is empty"},
		{name: "bad level", env: map[string]string{"CONDUIT_PROXY_LOG_LEVEL": "loud"}, wantErr: "CONDUIT_PROXY_LOG_LEVEL=\"loud\" is invalid (accepted: debug, info, warn, error)"},
		{name: "bad format", env: map[string]string{"CONDUIT_PROXY_LOG_FORMAT": "xml"}, wantErr: "CONDUIT_PROXY_LOG_FORMAT"},
		{name: "ipv6 off", env: map[string]string{"CONDUIT_PROXY_IPV6": "off"}, check: func(t *testing.T, c *Config) {
			if c.IPv6 != IPv6Off {
				t.Errorf("IPv6 %q", c.IPv6)
			}
		}},
		{name: "ipv6 on, IPv6 listen address", env: map[string]string{"CONDUIT_PROXY_IPV6": "on", "CONDUIT_PROXY_INBOUND_LISTEN_ADDR": "[::]:4143"}, check: func(t *testing.T, c *Config) {
			if c.IPv6 != IPv6On || c.InboundAddr != "[::]:4143" {
				t.Errorf("IPv6 %q inbound %q", c.IPv6, c.InboundAddr)
			}
		}},
		{name: "bad ipv6", env: map[string]string{"CONDUIT_PROXY_IPV6": "true"}, wantErr: "config: CONDUIT_PROXY_IPV6=\"true\" is invalid (accepted: auto, on, off)"},
		// Lowercase only, as the injector writes it; space around it is
		// trimmed, as around every variable.
		{name: "uppercase ipv6", env: map[string]string{"CONDUIT_PROXY_IPV6": "ON"}, wantErr: "config: CONDUIT_PROXY_IPV6=\"ON\" is invalid (accepted: auto, on, off)"},
		{name: "ipv6 with space", env: map[string]string{"CONDUIT_PROXY_IPV6": " off "}, check: func(t *testing.T, c *Config) {
			if c.IPv6 != IPv6Off {
				t.Errorf("IPv6 %q", c.IPv6)
			}
		}},
		{name: "bad grace", env: map[string]string{"CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD": "30"}, wantErr: "CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD=\"30\" is invalid (accepted: a non-negative Go duration"},
		{name: "wait for app exit off by default", check: func(t *testing.T, c *Config) {
			if c.WaitForAppExit != 0 {
				t.Errorf("wait for app exit %v", c.WaitForAppExit)
			}
		}},
		{name: "wait for app exit", env: map[string]string{"CONDUIT_PROXY_WAIT_FOR_APP_EXIT": "45s"}, check: func(t *testing.T, c *Config) {
			if c.WaitForAppExit != 45*time.Second {
				t.Errorf("wait for app exit %v", c.WaitForAppExit)
			}
		}},
		{name: "bad wait for app exit", env: map[string]string{"CONDUIT_PROXY_WAIT_FOR_APP_EXIT": "-1s"}, wantErr: "CONDUIT_PROXY_WAIT_FOR_APP_EXIT=\"-1s\" is invalid (accepted: a non-negative Go duration"},
		{name: "access log", env: map[string]string{"CONDUIT_PROXY_ACCESS_LOG": "json"}, check: func(t *testing.T, c *Config) {
			if c.AccessLog != "json" {
				t.Errorf("access log %q", c.AccessLog)
			}
		}},
		{name: "bad access log", env: map[string]string{"CONDUIT_PROXY_ACCESS_LOG": "apache"}, wantErr: "CONDUIT_PROXY_ACCESS_LOG=\"apache\" is invalid (accepted: json, or empty for none)"},
		{name: "cluster networks", env: map[string]string{"CONDUIT_PROXY_CLUSTER_NETWORKS": "10.244.0.0/16, 10.96.0.1,2001:db8::/48"}, check: func(t *testing.T, c *Config) {
			if fmt.Sprint(c.ClusterNetworks) != "[10.244.0.0/16 10.96.0.1/32 2001:db8::/48]" {
				t.Errorf("cluster networks %v", c.ClusterNetworks)
			}
		}},
		{name: "bad cluster networks", env: map[string]string{"CONDUIT_PROXY_CLUSTER_NETWORKS": "10.0.0.0/8,::ffff:10.0.0.0/104"}, wantErr: `CONDUIT_PROXY_CLUSTER_NETWORKS="10.0.0.0/8,::ffff:10.0.0.0/104" is invalid (accepted: comma-separated IPv4 and IPv6 CIDRs`},
		{name: "no cluster network", env: map[string]string{"CONDUIT_PROXY_CLUSTER_NETWORKS": ","}, wantErr: "no network"},
		{name: "bad port list", env: map[string]string{"CONDUIT_PROXY_INBOUND_OPAQUE_PORTS": "25,http"}, wantErr: "CONDUIT_PROXY_INBOUND_OPAQUE_PORTS"},
		{name: "reversed range", env: map[string]string{"CONDUIT_PROXY_INBOUND_OPAQUE_PORTS": "90-80"}, wantErr: "ends below its start"},
		{name: "bad listen", env: map[string]string{"CONDUIT_PROXY_INBOUND_LISTEN_ADDR": "4143"}, wantErr: "CONDUIT_PROXY_INBOUND_LISTEN_ADDR"},
		{name: "bad destination addr", env: map[string]string{"CONDUIT_PROXY_DESTINATION_ADDR": "dest:0"}, wantErr: "CONDUIT_PROXY_DESTINATION_ADDR"},
		{name: "missing identity", env: map[string]string{"CONDUIT_PROXY_IDENTITY_NAME": ""}, wantErr: "CONDUIT_PROXY_IDENTITY_NAME is required"},
		{name: "bad identity", env: map[string]string{"CONDUIT_PROXY_IDENTITY_NAME": "web_ns"}, wantErr: "CONDUIT_PROXY_IDENTITY_NAME"},
		{name: "bad anchors", env: map[string]string{"CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS": "not pem"}, wantErr: "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS is invalid"},
		{name: "bad context", env: map[string]string{"CONDUIT_PROXY_DESTINATION_CONTEXT": "ns=x"}, wantErr: `CONDUIT_PROXY_DESTINATION_CONTEXT="ns=x" is invalid (accepted: a JSON object`},
		{name: "pprof off by default", check: func(t *testing.T, c *Config) {
			if c.DebugPprof {
				t.Error("pprof on")
			}
		}},
		{name: "pprof on", env: map[string]string{"CONDUIT_PROXY_DEBUG_PPROF": "true"}, check: func(t *testing.T, c *Config) {
			if !c.DebugPprof {
				t.Error("pprof off")
			}
		}},
		{name: "pprof set and empty", env: map[string]string{"CONDUIT_PROXY_DEBUG_PPROF": ""}, check: func(t *testing.T, c *Config) {
			if c.DebugPprof {
				t.Error("pprof on")
			}
		}},
		{name: "bad pprof", env: map[string]string{"CONDUIT_PROXY_DEBUG_PPROF": "yes"}, wantErr: `config: CONDUIT_PROXY_DEBUG_PPROF="yes" is invalid (accepted: true, false)`},
		{name: "cluster domain", env: map[string]string{"CONDUIT_PROXY_CLUSTER_DOMAIN": "corp.example"}, check: func(t *testing.T, c *Config) {
			if c.ClusterDomain != "corp.example" {
				t.Errorf("cluster domain %q", c.ClusterDomain)
			}
		}},
		{name: "bad cluster domain", env: map[string]string{"CONDUIT_PROXY_CLUSTER_DOMAIN": "cluster.local."}, wantErr: `config: CONDUIT_PROXY_CLUSTER_DOMAIN="cluster.local." is invalid (accepted: a DNS suffix`},
		{name: "bad tap", env: map[string]string{"CONDUIT_PROXY_TAP_ENABLED": "maybe"}, wantErr: "CONDUIT_PROXY_TAP_ENABLED"},
		{name: "tap off by default", check: func(t *testing.T, c *Config) {
			if c.TapEnabled || c.TapAddr != "127.0.0.1:4190" {
				t.Errorf("tap %v on %s", c.TapEnabled, c.TapAddr)
			}
		}},
		{name: "tap enabled", env: map[string]string{"CONDUIT_PROXY_TAP_ENABLED": "true", "CONDUIT_PROXY_TAP_ADDR": "127.0.0.1:0"},
			check: func(t *testing.T, c *Config) {
				if !c.TapEnabled || c.TapAddr != "127.0.0.1:0" {
					t.Errorf("tap %v on %s", c.TapEnabled, c.TapAddr)
				}
			}},
		{name: "tap disabled explicitly", env: map[string]string{"CONDUIT_PROXY_TAP_ENABLED": "false"},
			check: func(t *testing.T, c *Config) {
				if c.TapEnabled {
					t.Error("tap enabled")
				}
			}},
		{name: "http1 defaults", check: func(t *testing.T, c *Config) {
			if !c.HTTP1FastPath || c.MeshedHTTP1 || !c.HTTP2FastPath {
				t.Errorf("fast path %v, meshed HTTP/1.1 %v, HTTP/2 fast path %v; want both fast paths and h2", c.HTTP1FastPath, c.MeshedHTTP1, c.HTTP2FastPath)
			}
		}},
		{name: "meshed http1", env: map[string]string{"CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT": "http1"},
			check: func(t *testing.T, c *Config) {
				if !c.MeshedHTTP1 {
					t.Error("meshed HTTP/1.1 off")
				}
			}},
		{name: "fast path off", env: map[string]string{"CONDUIT_PROXY_HTTP1_FAST_PATH": "false"},
			check: func(t *testing.T, c *Config) {
				if c.HTTP1FastPath {
					t.Error("fast path on")
				}
			}},
		{name: "HTTP/2 fast path off", env: map[string]string{"CONDUIT_PROXY_HTTP2_FAST_PATH": "false"},
			check: func(t *testing.T, c *Config) {
				if c.HTTP2FastPath || !c.HTTP1FastPath {
					t.Errorf("HTTP/2 fast path %v, HTTP/1 fast path %v; want off, on", c.HTTP2FastPath, c.HTTP1FastPath)
				}
			}},
		{name: "bad HTTP/2 fast path", env: map[string]string{"CONDUIT_PROXY_HTTP2_FAST_PATH": "yes please"}, wantErr: "CONDUIT_PROXY_HTTP2_FAST_PATH=\"yes please\" is invalid (accepted: true, false)"},
		{name: "bad fast path", env: map[string]string{"CONDUIT_PROXY_HTTP1_FAST_PATH": "fast"}, wantErr: "CONDUIT_PROXY_HTTP1_FAST_PATH=\"fast\" is invalid (accepted: true, false)"},
		{name: "bad meshed transport", env: map[string]string{"CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT": "h3"}, wantErr: "CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT=\"h3\" is invalid (accepted: h2, http1)"},
		{name: "meshed http1 without fast path", env: map[string]string{"CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT": "http1", "CONDUIT_PROXY_HTTP1_FAST_PATH": "false"}, wantErr: "needs CONDUIT_PROXY_HTTP1_FAST_PATH=true"},
		{name: "tap off loopback", env: map[string]string{"CONDUIT_PROXY_TAP_ADDR": "0.0.0.0:4190"}, wantErr: "CONDUIT_PROXY_TAP_ADDR=\"0.0.0.0:4190\" is invalid"},
		{name: "bad tap addr", env: map[string]string{"CONDUIT_PROXY_TAP_ADDR": "4190"}, wantErr: "CONDUIT_PROXY_TAP_ADDR"},
		{name: "bad override", env: map[string]string{"CONDUIT_PROXY_INBOUND_TARGET_OVERRIDE": "x"}, wantErr: "CONDUIT_PROXY_INBOUND_TARGET_OVERRIDE"},
		{name: "discovery idle timeout and last known state", env: map[string]string{"CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT": "30s", "CONDUIT_PROXY_DISCOVERY_LAST_KNOWN_MAX_AGE": "0s"},
			check: func(t *testing.T, c *Config) {
				if c.DiscoveryIdleTimeout != 30*time.Second || c.DiscoveryLastKnownMaxAge != 0 {
					t.Errorf("idle %v, last known %v", c.DiscoveryIdleTimeout, c.DiscoveryLastKnownMaxAge)
				}
			}},
		{name: "zero discovery idle timeout", env: map[string]string{"CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT": "0s"}, wantErr: `CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT="0s" is invalid (accepted: a positive Go duration`},
		{name: "zero detect timeout", env: map[string]string{"CONDUIT_PROXY_DETECT_PROTOCOL_TIMEOUT": "0ms"}, wantErr: `CONDUIT_PROXY_DETECT_PROTOCOL_TIMEOUT="0ms" is invalid (accepted: a positive Go duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParsePorts(t *testing.T) {
	// Space and empty items are ignored, as the injector, proxy-init and the
	// destination service ignore them: the injector let "3306," through,
	// and a proxy that refused it would never start.
	got, err := ParsePorts(" 25, 8000 - 8002,25 ,,")
	if err != nil {
		t.Fatal(err)
	}
	has := func(p uint16) bool { return ports.Contains(got, p) }
	if !has(25) || !has(8000) || !has(8001) || !has(8002) || has(8003) || has(7999) || has(24) {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"0", "65536", "a", "1-", "-1", "5-3", "1,x"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) accepted", bad)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"25,587", "1-65535", "", "80-80, 443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParsePorts(s)
		if err != nil {
			return
		}
		if ports.Contains(rs, 0) {
			t.Fatal("port 0 accepted")
		}
	})
}

// TestEveryDocumentedVariable: each CONDUIT_PROXY_* variable of the
// Environment table in docs/proxy.md is read by Load, and a bad value stops
// the proxy with an error that names it and the accepted values, rather
// than being ignored (CONDUIT_PROXY_DEBUG_PPROF=yes once left profiling off
// without a word; a bad CONDUIT_PROXY_CLUSTER_DOMAIN broke every short name).
func TestEveryDocumentedVariable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/proxy.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "\n## Environment\n")
	end := strings.Index(text, "\n## Behaviour\n")
	if start < 0 || end < start {
		t.Fatal("no Environment section in docs/proxy.md")
	}
	// Any string is a good value for these.
	free := map[string]bool{
		"CONDUIT_PROXY_POD_NAME": true, "CONDUIT_PROXY_POD_NAMESPACE": true, "CONDUIT_PROXY_IDENTITY_TOKEN_FILE": true,
	}
	var names []string
	for _, line := range strings.Split(text[start:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		names = append(names, regexp.MustCompile(`CONDUIT_PROXY_[A-Z0-9_]+`).FindAllString(cells[1], -1)...)
	}
	if len(names) < 30 {
		t.Fatalf("found %d variables in docs/proxy.md: %v", len(names), names)
	}
	base := map[string]string{
		"CONDUIT_PROXY_IDENTITY_NAME":          "web.ns.serviceaccount.identity.conduit.cluster.local",
		"CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS": anchors(t),
	}
	for _, name := range names {
		if free[name] {
			continue
		}
		t.Run(name, func(t *testing.T) {
			const bad = "not valid!"
			env := map[string]string{name: bad}
			for k, v := range base {
				if k != name {
					env[k] = v
				}
			}
			_, err := Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err == nil {
				t.Fatalf("%s=%q accepted", name, bad)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "config: "+name) || !strings.Contains(msg, "is invalid (accepted: ") {
				t.Errorf("%s=%q: error %q, want \"config: %s=... is invalid (accepted: ...)\"", name, bad, msg, name)
			}
		})
	}
}
