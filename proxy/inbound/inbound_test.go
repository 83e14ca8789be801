package inbound

import (
	"net/http"
	"testing"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

func TestSetClientID(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		peer string
		want []string
	}{
		{"spoofed replaced", http.Header{HeaderClientID: {"evil"}}, "web.ns.serviceaccount.identity.conduit.cluster.local", []string{"web.ns.serviceaccount.identity.conduit.cluster.local"}},
		{"spoofed twice replaced", http.Header{HeaderClientID: {"a", "b"}}, "x.y", []string{"x.y"}},
		{"spoofed stripped without peer", http.Header{HeaderClientID: {"evil"}}, "", nil},
		{"absent, set", http.Header{}, "x.y", []string{"x.y"}},
		{"absent, none", http.Header{"Other": {"1"}}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			SetClientID(tt.in, &netx.Info{PeerID: tt.peer})
			got := tt.in.Values("conduit-client-id")
			if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func BenchmarkSetClientID(b *testing.B) {
	info := &netx.Info{PeerID: "web.ns.serviceaccount.identity.conduit.cluster.local"}
	h := http.Header{HeaderClientID: {"evil"}, "Content-Type": {"text/plain"}}
	spoofed := []string{"evil"}
	b.ReportAllocs()
	for b.Loop() {
		h[HeaderClientID] = spoofed
		SetClientID(h, info)
	}
}
