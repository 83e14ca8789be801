package framework

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// errNoKubeProxyRules: the rules of kube-proxy's iptables mode cannot be
// read on this machine (not root, no iptables-save, or a cluster whose
// kube-proxy runs elsewhere or in another mode).
var errNoKubeProxyRules = errors.New("kube-proxy's iptables rules are not readable here")

// iptablesSave returns the host's nat table of one address family
// (iptables-save or ip6tables-save) as it prints it.
func iptablesSave(ctx context.Context, save string) (string, error) {
	out, err := exec.CommandContext(ctx, save, "-t", "nat").Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", errNoKubeProxyRules, save, err)
	}
	s := string(out)
	if !strings.Contains(s, ":KUBE-SERVICES ") {
		return "", fmt.Errorf("%w: no KUBE-SERVICES chain in the nat table", errNoKubeProxyRules)
	}
	return s, nil
}

// kubeProxyEndpoints reads, from the nat table of kube-proxy's iptables mode,
// the endpoints kube-proxy sends each port of Service ns/svc to: port name
// ("" for an unnamed port) to the set of endpoint IPs. kube-proxy writes one
// rule per endpoint in the port's KUBE-SVC chain, commented
// "<ns>/<svc>[:<port>] -> <ip>:<port>" (KUBE-SVL for a Local traffic
// policy: on one node, the same endpoints); a port without endpoints has none.
func kubeProxyEndpoints(natTable, ns, svc string) map[string]map[string]bool {
	prefix := ns + "/" + svc
	got := map[string]map[string]bool{}
	for line := range strings.SplitSeq(natTable, "\n") {
		if !strings.HasPrefix(line, "-A KUBE-SVC-") && !strings.HasPrefix(line, "-A KUBE-SVL-") || !strings.Contains(line, "-j KUBE-SEP-") {
			continue
		}
		_, c, ok := strings.Cut(line, `--comment "`)
		if !ok {
			continue
		}
		c, _, ok = strings.Cut(c, `"`)
		if !ok {
			continue
		}
		name, addr, ok := strings.Cut(c, " -> ")
		if !ok {
			continue
		}
		port, ok := strings.CutPrefix(name, prefix)
		if !ok || port != "" && !strings.HasPrefix(port, ":") {
			continue // another Service, perhaps one whose name starts with svc
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		port = strings.TrimPrefix(port, ":")
		if got[port] == nil {
			got[port] = map[string]bool{}
		}
		got[port][host] = true
	}
	return got
}

// kubeProxyMissing says which of want (port name to ready endpoint IPs) the
// rules in have do not match, "" when every port goes to exactly its ready
// endpoints.
func kubeProxyMissing(have, want map[string]map[string]bool) string {
	var diffs []string
	for _, port := range slices.Sorted(maps.Keys(want)) {
		if !maps.Equal(have[port], want[port]) {
			diffs = append(diffs, fmt.Sprintf("port %q to %v, want %v", port, slices.Sorted(maps.Keys(have[port])), slices.Sorted(maps.Keys(want[port]))))
		}
	}
	return strings.Join(diffs, "; ")
}

// saveCommands: the command that prints the nat table kube-proxy writes
// each address family's rules to.
var saveCommands = map[discoveryv1.AddressType]string{
	discoveryv1.AddressTypeIPv4: "iptables-save",
	discoveryv1.AddressTypeIPv6: "ip6tables-save",
}

// waitKubeProxy waits until kube-proxy sends every port of Service ns/svc to
// exactly the ready endpoints in want (per address family, port name to
// endpoint IPs). kube-proxy programs a Service a moment after its
// EndpointSlices change: a client outside the mesh that connects in
// between is refused (no endpoints yet) or sent to the endpoints of
// before. Where kube-proxy's rules cannot be read, it logs so and returns:
// the EndpointSlices are all there is to wait for.
func (f *Framework) waitKubeProxy(t testing.TB, ns, svc string, want map[discoveryv1.AddressType]map[string]map[string]bool, timeout time.Duration) {
	t.Helper()
	for _, family := range slices.Sorted(maps.Keys(want)) {
		save := saveCommands[family]
		if save == "" {
			continue // FQDN slices: kube-proxy ignores them
		}
		var last, first string
		var unreadable error // the first read failed: the rules cannot be read here
		polls := 0
		start := time.Now()
		err := poll(context.Background(), timeout, func(ctx context.Context) (bool, error) {
			polls++
			nat, err := iptablesSave(ctx, save)
			if err != nil && polls == 1 {
				unreadable = err
				return true, nil
			}
			if err != nil {
				return false, err
			}
			last = kubeProxyMissing(kubeProxyEndpoints(nat, ns, svc), want[family])
			if first == "" {
				first = last
			}
			return last == "", nil
		})
		if unreadable != nil {
			t.Logf("e2e: service %s/%s: not waiting for kube-proxy: %v", ns, svc, unreadable)
			continue
		}
		if err != nil {
			t.Fatalf("e2e: service %s/%s: kube-proxy (%s) sends %s: %v", ns, svc, family, last, err)
		}
		if first != "" {
			// Worth a line: a client outside the mesh would have been refused or misrouted.
			t.Logf("e2e: service %s/%s: kube-proxy (%s) programmed %v after its endpoints were ready (it sent %s)",
				ns, svc, family, time.Since(start).Round(time.Millisecond), first)
		}
	}
}
