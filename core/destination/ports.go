package destination

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/conduit-mesh/conduit/pkg/ports"
	"github.com/conduit-mesh/conduit/pkg/ports/podports"
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

// portSet is a set of ports, kept as the ranges it was written with: a
// pod's "1-65535" costs one range, not 65,535 entries, at every endpoint
// recompute.
type portSet []ports.Range

func (s portSet) has(p uint32) bool { return p <= 65535 && ports.Contains(s, uint16(p)) }

// parsePorts reads a list of ports, ranges and, when pod is given, the
// names of its containers' ports, as the injector and the proxy read it
// (pkg/ports). On an invalid item it returns the valid ones and an error.
func parsePorts(spec string, pod *corev1.Pod) (portSet, error) {
	var names ports.Names
	if pod != nil {
		names = podports.Names(pod)
	}
	return parsePortList(spec, names)
}

// parseServicePorts reads a Service's port list: numbers, ranges, and the
// names of the Service's own TCP ports.
func parseServicePorts(spec string, svc *corev1.Service) (portSet, error) {
	return parsePortList(spec, podports.ServiceNames(svc))
}

func parsePortList(spec string, names ports.Names) (portSet, error) {
	rs, err := ports.Parse(spec, names)
	s := portSet(rs)
	if s == nil {
		s = portSet{} // set but empty: not the same as no annotation
	}
	if err != nil {
		return s, fmt.Errorf("destination: %w", err)
	}
	return s, nil
}
