package injector

import (
	"os"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseConfig(t *testing.T) {
	full, err := os.ReadFile("testdata/conduit-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig("conduit", full)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig("conduit")
	want.Version = "v0.1.0"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("the documented example differs from the defaults:\n%+v\n%+v", c, want)
	}

	for _, tc := range []struct {
		name, values, wantErr string
		check                 func(Config) bool
	}{
		{name: "empty takes the defaults", values: "", check: func(c Config) bool { return reflect.DeepEqual(c, DefaultConfig("conduit")) }},
		{name: "json works", values: `{"version":"v9.9.9","proxy":{"logLevel":"debug"}}`,
			check: func(c Config) bool {
				return c.Version == "v9.9.9" && c.Proxy.LogLevel == "debug" && c.Proxy.UID == 2102
			}},
		{name: "trust domain derives the server names", values: "trustDomain: example.org",
			check: func(c Config) bool {
				return c.Identity.ServerName == "conduit-identity.conduit.serviceaccount.identity.conduit.example.org" &&
					strings.HasSuffix(c.Destination.ServerName, ".example.org")
			}},
		{name: "zero disables a default resource", values: "proxy: {resources: {memoryLimit: \"0\"}}",
			check: func(c Config) bool {
				return c.Proxy.Resources.MemoryLimit == "" && c.Proxy.Resources.MemoryRequest == "20Mi"
			}},
		{name: "unknown key", values: "proxy: {imag: x}", wantErr: "unknown field"},
		{name: "bad image", values: "proxy: {image: \"localhost/conduit/proxy:v1\"}", wantErr: "proxy.image"},
		{name: "bad tag", values: "version: \"v 1\"", wantErr: "version"},
		// Also the value of the conduit.dev/proxy-version label: 63 characters at most.
		{name: "tag too long for a label", values: "version: sha256-9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", wantErr: "version"},
		{name: "tag ending like no label", values: "version: v1.0.0-", wantErr: "version"},
		{name: "bad pull policy", values: "proxy: {imagePullPolicy: Sometimes}", wantErr: "proxy.imagePullPolicy"},
		{name: "root uid", values: "proxy: {uid: -1}", wantErr: "proxy.uid"},
		{name: "bad opaque ports", values: "proxy: {opaquePorts: mysql}", wantErr: "proxy.opaquePorts"},
		{name: "bad grace", values: "proxy: {shutdownGracePeriod: soon}", wantErr: "proxy.shutdownGracePeriod"},
		{name: "discovery defaults to the proxy's", values: "proxy: {logLevel: debug}",
			check: func(c Config) bool { return c.Proxy.Discovery == ProxyDiscoveryConfig{} }},
		{name: "discovery", values: `proxy: {discovery: {idleTimeout: 10s, lastKnownMaxAge: "0s"}}`,
			check: func(c Config) bool {
				return c.Proxy.Discovery == ProxyDiscoveryConfig{IdleTimeout: "10s", LastKnownMaxAge: "0s"}
			}},
		// The proxy refuses both at start: a crash loop of every new pod.
		{name: "zero idle timeout", values: `proxy: {discovery: {idleTimeout: "0s"}}`, wantErr: `proxy.discovery.idleTimeout: "0s" is not a positive duration`},
		{name: "negative last-known max age", values: `proxy: {discovery: {lastKnownMaxAge: "-1h"}}`, wantErr: "proxy.discovery.lastKnownMaxAge"},
		{name: "cluster networks", values: `proxy: {clusterNetworks: "10.0.0.0/8, fd00::/8"}`,
			check: func(c Config) bool { return c.Proxy.ClusterNetworks == "10.0.0.0/8, fd00::/8" }},
		{name: "bad cluster networks", values: `proxy: {clusterNetworks: "10.0.0.0/33"}`, wantErr: `proxy.clusterNetworks: subnet "10.0.0.0/33": not a CIDR`},
		{name: "no cluster network", values: `proxy: {clusterNetworks: ","}`, wantErr: `proxy.clusterNetworks: "," holds no network`},
		{name: "bad discovery key", values: `proxy: {discovery: {idle: 10s}}`, wantErr: "unknown field"},
		{name: "bad mode", values: "proxyInit: {iptablesMode: ebpf}", wantErr: "proxyInit.iptablesMode"},
		{name: "ipv6 mode", values: `proxy: {ipv6: "off"}`, check: func(c Config) bool { return c.Proxy.IPv6 == "off" }},
		{name: "ipv6 mode defaults to auto", values: `proxy: {logLevel: debug}`, check: func(c Config) bool { return c.Proxy.IPv6 == "auto" }},
		// The proxy takes only the lowercase words.
		{name: "bad ipv6 mode", values: `proxy: {ipv6: "On"}`, wantErr: "proxy.ipv6"},
		// Unquoted, YAML 1.1's boolean, which reaches the string field as
		// "false": the error says to quote it.
		{name: "unquoted ipv6 off", values: "proxy:\n  ipv6: off\n", wantErr: `proxy.ipv6: unknown IPv6 mode "false" (accepted: auto, on, off); unquoted in YAML, on and off read as true and false: quote them`},
		{name: "bad subnet", values: "proxyInit: {skipSubnets: x}", wantErr: "proxyInit.skipSubnets"},
		{name: "bad quantity", values: "proxyInit: {resources: {cpuLimit: lots}}", wantErr: "proxyInit.resources.cpuLimit"},
		{name: "bad anchors", values: "identity: {trustAnchorsPEM: nope}", wantErr: "identity.trustAnchorsPEM"},
		{name: "short token", values: "identity: {tokenExpirationSeconds: 60}", wantErr: "identity.tokenExpirationSeconds"},
		// Values that every injected proxy would refuse at start (proxy/config):
		// a crash loop of every new pod, rather than an error here.
		{name: "address without port", values: "destination: {address: conduit-destination.conduit.svc.cluster.local}", wantErr: "destination.address"},
		{name: "address with port 0", values: "identity: {address: \"conduit-identity:0\"}", wantErr: "identity.address"},
		{name: "trust domain not a DNS name", values: "trustDomain: cluster_local", wantErr: "trustDomain"},
		{name: "server name not a DNS name", values: "identity: {serverName: \"conduit identity\"}", wantErr: "identity.serverName"},
		{name: "destination name not a DNS name", values: "destination: {serverName: \"a..b\"}", wantErr: "destination.serverName"},
		{name: "proxy ports collide", values: "proxy: {adminPort: 4143}", wantErr: "proxy.adminPort"},
		{name: "empty await command", values: "proxy: {awaitCommand: [\"\"]}", wantErr: "proxy.awaitCommand"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig("conduit", []byte(tc.values))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func cm(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "conduit"}, Data: data}
}

func TestConfigStore(t *testing.T) {
	pem, err := os.ReadFile("testdata/trust-anchors.pem")
	if err != nil {
		t.Fatal(err)
	}
	s := NewConfigStore("conduit", quietLog())
	if ok, _ := s.Loaded(); ok || s.Get().Version != "dev" {
		t.Fatal("a new store holds the defaults and is not loaded")
	}
	s.Update(cm(ConfigMapName, map[string]string{ConfigMapKey: "version: v1.0.0"}), false)
	if ok, _ := s.Loaded(); !ok || s.Get().Version != "v1.0.0" {
		t.Errorf("not applied: %+v", s.Get())
	}
	// Trust roots from their own ConfigMap fill an empty trustAnchorsPEM.
	s.Update(cm(TrustRootsName, map[string]string{TrustRootsKey: string(pem)}), false)
	if s.Get().Identity.TrustAnchorsPEM != string(pem) || s.Get().Version != "v1.0.0" {
		t.Error("trust roots not merged")
	}
	// An invalid edit keeps the last good configuration.
	s.Update(cm(ConfigMapName, map[string]string{ConfigMapKey: "version: [oops"}), false)
	if ok, err := s.Loaded(); !ok || err == nil || s.Get().Version != "v1.0.0" {
		t.Errorf("invalid edit: loaded=%v err=%v version=%s", ok, err, s.Get().Version)
	}
	s.Update(cm(ConfigMapName, map[string]string{}), false)
	if _, err := s.Loaded(); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Errorf("missing key: %v", err)
	}
	// A later valid edit applies and clears the error.
	s.Update(cm(ConfigMapName, map[string]string{ConfigMapKey: "version: v1.1.0"}), false)
	if ok, err := s.Loaded(); !ok || err != nil || s.Get().Version != "v1.1.0" {
		t.Errorf("valid edit: %v %v %s", ok, err, s.Get().Version)
	}
	// Other namespaces and names are ignored.
	other := cm(ConfigMapName, map[string]string{ConfigMapKey: "version: v6.6.6"})
	other.Namespace = "default"
	s.Update(other, false)
	s.Update(cm("unrelated", map[string]string{ConfigMapKey: "version: v6.6.6"}), false)
	if s.Get().Version != "v1.1.0" {
		t.Error("foreign ConfigMap applied")
	}
	// Deleting conduit-config keeps the last configuration; deleting the roots drops them.
	s.Update(cm(ConfigMapName, nil), true)
	s.Update(cm(TrustRootsName, nil), true)
	if s.Get().Version != "v1.1.0" || s.Get().Identity.TrustAnchorsPEM != "" {
		t.Errorf("after deletes: %+v", s.Get())
	}
}
