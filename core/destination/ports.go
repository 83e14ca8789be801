package destination

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Annotations and labels the destination service reads.
const (
	OpaquePortsAnnotation      = "config.conduit.dev/opaque-ports"
	SkipInboundPortsAnnotation = "config.conduit.dev/skip-inbound-ports"
	ControlPlaneNSLabel        = "conduit.dev/control-plane-ns"
	ProxyInboundPort           = 4143
	DefaultWeight              = 10000
)

// DefaultOpaquePorts are the server-speaks-first ports of the architecture contract.
const DefaultOpaquePorts = "25,587,3306,4444,5432,6379,9300,11211"

// portSet is a set of ports.
type portSet map[uint32]struct{}

func (s portSet) has(p uint32) bool { _, ok := s[p]; return ok }

// parsePorts parses "25,587,3306-3310" and, when pod is given, container port
// names. Unknown names and bad ranges are reported.
func parsePorts(spec string, pod *corev1.Pod) (portSet, error) {
	s := portSet{}
	var bad []string
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if lo, hi, ok := strings.Cut(f, "-"); ok {
			a, err1 := strconv.ParseUint(lo, 10, 16)
			b, err2 := strconv.ParseUint(hi, 10, 16)
			if err1 != nil || err2 != nil || a > b || b-a > 65535 {
				bad = append(bad, f)
				continue
			}
			for p := a; p <= b; p++ {
				s[uint32(p)] = struct{}{}
			}
			continue
		}
		if p, err := strconv.ParseUint(f, 10, 16); err == nil {
			s[uint32(p)] = struct{}{}
			continue
		}
		if pod != nil && namedPort(pod, f, s) {
			continue
		}
		bad = append(bad, f)
	}
	if len(bad) > 0 {
		return s, fmt.Errorf("destination: bad ports %q in %q", bad, spec)
	}
	return s, nil
}

func namedPort(pod *corev1.Pod, name string, s portSet) bool {
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name {
				s[uint32(cp.ContainerPort)] = struct{}{}
				return true
			}
		}
	}
	return false
}
