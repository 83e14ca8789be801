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
