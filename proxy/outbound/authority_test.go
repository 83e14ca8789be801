package outbound

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		host string
		want string
		ok   bool
	}{
		{"web", "web.emojivoto.svc.cluster.local:80", true},
		{"web:8080", "web.emojivoto.svc.cluster.local:8080", true},
		{"web.other", "web.other.svc.cluster.local:80", true},
		{"web.other.svc", "web.other.svc.cluster.local:80", true},
		{"web.other.svc.cluster.local:9090", "web.other.svc.cluster.local:9090", true},
		{"WEB.Other.svc.cluster.local.", "web.other.svc.cluster.local:80", true},
		{"10.0.0.1:80", "", false},
		{"[::1]:80", "", false},
		{"example.org.uk", "", false},
		{"a.b.c.svc.cluster.local", "", false},
		{"web:0", "", false},
		{"web:http", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := Normalize(tt.host, "emojivoto", "cluster.local")
		if got != tt.want || ok != tt.ok {
			t.Errorf("Normalize(%q) = %q, %v; want %q, %v", tt.host, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := Normalize("web", "", "cluster.local"); ok {
		t.Error("a single label without namespace must not resolve")
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"web", "web.ns:8080", "1.2.3.4:5", "[::1]", "a.b.svc.cluster.local."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		name, ok := Normalize(host, "ns", "cluster.local")
		if !ok {
			return
		}
		if !strings.Contains(name, ".svc.cluster.local:") {
			t.Fatalf("Normalize(%q) = %q", host, name)
		}
		again, ok := Normalize(name, "ns", "cluster.local")
		if !ok || again != name {
			t.Fatalf("not idempotent: %q -> %q -> %q", host, name, again)
		}
	})
}

func BenchmarkNormalizeFQDN(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Normalize("web.emojivoto.svc.cluster.local:8080", "emojivoto", "cluster.local"); !ok {
			b.Fatal("not ok")
		}
	}
}

// TestProxyNormalizeRemembers: the proxy's normalize answers as Normalize
// whatever the hosts and their order (slots are shared), and a host asked
// again costs no allocation.
func TestProxyNormalizeRemembers(t *testing.T) {
	p := &Proxy{o: Options{Namespace: "emojivoto", ClusterDomain: "cluster.local"}}
	hosts := []string{"web", "web:8080", "web.other", "voting", "emoji.emojivoto.svc", "10.0.0.1:80",
		"WEB.Other.svc.cluster.local.", "a.b.c.svc.cluster.local", "web:0", "x", "y", "z", "web.other.svc.cluster.local:9090"}
	for range 3 {
		for i := range hosts {
			for _, h := range []string{hosts[i], hosts[len(hosts)-1-i]} {
				wantName, wantOK := Normalize(h, "emojivoto", "cluster.local")
				if name, ok := p.normalize(h); name != wantName || ok != wantOK {
					t.Errorf("normalize(%q) = %q, %v; want %q, %v", h, name, ok, wantName, wantOK)
				}
			}
		}
	}
	for _, h := range []string{"web", "10.0.0.1:80", "web.other.svc.cluster.local:9090"} {
		if n := testing.AllocsPerRun(100, func() { p.normalize(h) }); n != 0 {
			t.Errorf("normalize(%q) asked again: %v allocations, want 0", h, n)
		}
	}
}
