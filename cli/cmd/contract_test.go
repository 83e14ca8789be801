package cmd

import (
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/core/injector"
)

// The injector parses the chart's conduit-config strictly: every install
// variant must yield a configuration it accepts, with the chosen settings.
func TestConduitConfigMatchesInjector(t *testing.T) {
	withVersion(t, "v1.2.3")
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, c injector.Config)
	}{
		{"defaults", nil, func(t *testing.T, c injector.Config) {
			if c.Proxy.Image != "ghcr.io/conduit-mesh/proxy" || c.ProxyInit.Image != "ghcr.io/conduit-mesh/proxy-init" || c.Version != "v1.2.3" {
				t.Errorf("images = %s, %s, version %s", c.Proxy.Image, c.ProxyInit.Image, c.Version)
			}
			if c.Proxy.Resources.CPULimit != "" || c.Proxy.Resources.MemoryLimit != "250Mi" || c.ProxyInit.Resources.CPULimit != "" {
				t.Errorf("resources = %+v, %+v", c.Proxy.Resources, c.ProxyInit.Resources)
			}
			if c.Identity.Address != "conduit-identity.conduit.svc.cluster.local:8080" ||
				c.Destination.ServerName != "conduit-destination.conduit.serviceaccount.identity.conduit.cluster.local" {
				t.Errorf("identity/destination = %+v %+v", c.Identity, c.Destination)
			}
			if c.Proxy.IPv6 != "auto" {
				t.Errorf("proxy.ipv6 = %q, want auto", c.Proxy.IPv6)
			}
		}},
		// The injector gives the mode to proxy-init and the proxy of every pod
		// that does not choose its own.
		{"ipv6 mode", []string{"--set", "proxy.ipv6=off"}, func(t *testing.T, c injector.Config) {
			if c.Proxy.IPv6 != "off" {
				t.Errorf("proxy.ipv6 = %q, want off", c.Proxy.IPv6)
			}
		}},
		{"custom", []string{"--registry", "localhost/conduit", "--tag", "dev", "--proxy-version", "p1", "--identity-trust-domain", "example.org",
			"--cluster-domain", "cluster.example", "--proxy-cpu-limit", "1", "--default-opaque-ports", "3306", "--proxy-log-level", "debug",
			"--set", "proxyInit.skipSubnets=10.0.0.0/8"}, func(t *testing.T, c injector.Config) {
			if c.Proxy.Image != "localhost/conduit/proxy" || c.Version != "p1" || c.TrustDomain != "example.org" || c.Proxy.Resources.CPULimit != "1" ||
				c.Proxy.OpaquePorts != "3306" || c.Proxy.LogLevel != "debug" || c.ProxyInit.SkipSubnets != "10.0.0.0/8" {
				t.Errorf("config = %+v", c)
			}
			if c.Identity.Address != "conduit-identity.conduit.svc.cluster.example:8080" ||
				c.Identity.ServerName != "conduit-identity.conduit.serviceaccount.identity.conduit.example.org" {
				t.Errorf("identity = %+v", c.Identity)
			}
		}},
		// proxy-init takes IPv6 subnets too, each to its own family's table.
		{"ipv6 skip subnets", []string{"--set", "proxyInit.skipSubnets=10.0.0.0/8\\,fd00::/8"}, func(t *testing.T, c injector.Config) {
			if c.ProxyInit.SkipSubnets != "10.0.0.0/8,fd00::/8" {
				t.Errorf("proxyInit.skipSubnets = %q", c.ProxyInit.SkipSubnets)
			}
		}},
		{"full proxy repository", []string{"--proxy-image", "my.registry/team/proxy"}, func(t *testing.T, c injector.Config) {
			if c.Proxy.Image != "my.registry/team/proxy" {
				t.Errorf("proxy image = %s", c.Proxy.Image)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runWith(t, nil, append([]string{"install", "--ignore-cluster"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			cm := find(docs(t, out), "ConfigMap", configMapName)
			values, _ := dataOf(cm)["values"].(string)
			c, err := injector.ParseConfig("conduit", []byte(values))
			if err != nil {
				t.Fatalf("the injector rejects conduit-config: %v\n%s", err, values)
			}
			tc.check(t, c)
			// The default mode is not written: conduit-config stays as an
			// injector that predates the key accepts it.
			if tc.args == nil && strings.Contains(values, "ipv6") {
				t.Errorf("the default conduit-config names the IPv6 mode:\n%s", values)
			}
			if strings.Contains(values, "BEGIN") {
				t.Error("conduit-config holds identity material")
			}
		})
	}
}
