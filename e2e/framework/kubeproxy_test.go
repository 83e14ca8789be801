package framework

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// natTable is the shape of kube-proxy's (iptables mode) rules for some
// Services: ns/server (port http, two endpoints), ns/server2 (whose name
// starts with server's), ns/plain (an unnamed port), ns/empty (no
// endpoints: only a cluster-IP rule), ns/local (internalTrafficPolicy:
// Local), and ns/v6 as ip6tables-save prints it.
const natTable = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAA - [0:0]
-A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -m comment --comment "ns/server:http cluster IP" -m tcp --dport 8080 -j KUBE-SVC-AAAA
-A KUBE-SVC-AAAA ! -s 10.244.0.0/16 -d 10.96.0.5/32 -p tcp -m comment --comment "ns/server:http cluster IP" -m tcp --dport 8080 -j KUBE-MARK-MASQ
-A KUBE-SVC-AAAA -m comment --comment "ns/server:http -> 10.244.0.7:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A1
-A KUBE-SVC-AAAA -m comment --comment "ns/server:http -> 10.244.0.9:8080" -j KUBE-SEP-A2
-A KUBE-SVC-BBBB -m comment --comment "ns/server2:http -> 10.244.0.11:8080" -j KUBE-SEP-B1
-A KUBE-SVC-CCCC -m comment --comment "ns/plain -> 10.244.0.12:80" -j KUBE-SEP-C1
-A KUBE-SVL-FFFF -m comment --comment "ns/local:http -> 10.244.0.13:8080" -j KUBE-SEP-F1
-A KUBE-SVC-EEEE -m comment --comment "ns/v6:http -> [fd00:10:244::7]:8080" -j KUBE-SEP-E1
-A KUBE-SEP-A1 -p tcp -m comment --comment "ns/server:http" -m tcp -j DNAT --to-destination 10.244.0.7:8080
-A KUBE-SERVICES -d 10.96.0.6/32 -p tcp -m comment --comment "ns/empty:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-DDDD
COMMIT
`

func TestKubeProxyEndpoints(t *testing.T) {
	for _, tc := range []struct {
		svc  string
		want map[string][]string
	}{
		{"server", map[string][]string{"http": {"10.244.0.7", "10.244.0.9"}}},
		{"server2", map[string][]string{"http": {"10.244.0.11"}}},
		{"plain", map[string][]string{"": {"10.244.0.12"}}},
		{"empty", map[string][]string{}},
		{"local", map[string][]string{"http": {"10.244.0.13"}}},
		{"v6", map[string][]string{"http": {"fd00:10:244::7"}}},
		{"serv", map[string][]string{}},
	} {
		got := map[string][]string{}
		for port, ips := range kubeProxyEndpoints(natTable, "ns", tc.svc) {
			got[port] = slices.Sorted(maps.Keys(ips))
		}
		if !maps.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("%s: %v, want %v", tc.svc, got, tc.want)
		}
	}
}

func TestKubeProxyMissing(t *testing.T) {
	set := func(ips ...string) map[string]bool {
		m := map[string]bool{}
		for _, ip := range ips {
			m[ip] = true
		}
		return m
	}
	have := kubeProxyEndpoints(natTable, "ns", "server")
	for _, tc := range []struct {
		name string
		want map[string]map[string]bool
		diff string // a substring of the difference reported; "" for none
	}{
		{"programmed", map[string]map[string]bool{"http": set("10.244.0.7", "10.244.0.9")}, ""},
		{"an endpoint not yet programmed", map[string]map[string]bool{"http": set("10.244.0.7", "10.244.0.9", "10.244.0.10")}, `port "http" to [10.244.0.7 10.244.0.9], want [10.244.0.10 10.244.0.7 10.244.0.9]`},
		{"an endpoint gone but still programmed", map[string]map[string]bool{"http": set("10.244.0.7")}, `want [10.244.0.7]`},
		{"a port without rules", map[string]map[string]bool{"http": set("10.244.0.7", "10.244.0.9"), "admin": set("10.244.0.7")}, `port "admin" to [], want [10.244.0.7]`},
		{"no ports wanted", map[string]map[string]bool{}, ""},
	} {
		got := kubeProxyMissing(have, tc.want)
		if tc.diff == "" && got != "" || tc.diff != "" && !strings.Contains(got, tc.diff) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.diff)
		}
	}
}
