package injector

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/conduit-mesh/conduit/pkg/ipv6mode"
	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/ports"
	"github.com/conduit-mesh/conduit/pkg/ports/podports"
	"github.com/conduit-mesh/conduit/proxy/iptables"
)

// Annotations and labels of docs/architecture.md.
const (
	AnnotationInject       = "conduit.dev/inject"
	AnnotationInjectStatus = "conduit.dev/inject-status"
	AnnotationIdentityMode = "conduit.dev/identity-mode"
	LabelProxyVersion      = "conduit.dev/proxy-version"
	LabelControlPlaneNS    = "conduit.dev/control-plane-ns"

	// AnnotationKubectlDefaultContainer tells kubectl (logs, exec, attach,
	// cp) which container to use when none is named.
	AnnotationKubectlDefaultContainer = "kubectl.kubernetes.io/default-container"

	InjectEnabled  = "enabled"
	InjectDisabled = "disabled"
	StatusInjected = "injected"

	configPrefix = "config.conduit.dev/"

	AnnotationOpaquePorts         = configPrefix + "opaque-ports"
	AnnotationSkipInboundPorts    = configPrefix + "skip-inbound-ports"
	AnnotationSkipOutboundPorts   = configPrefix + "skip-outbound-ports"
	AnnotationSkipSubnets         = configPrefix + "skip-subnets"
	AnnotationProxyCPURequest     = configPrefix + "proxy-cpu-request"
	AnnotationProxyMemoryRequest  = configPrefix + "proxy-memory-request"
	AnnotationProxyCPULimit       = configPrefix + "proxy-cpu-limit"
	AnnotationProxyMemoryLimit    = configPrefix + "proxy-memory-limit"
	AnnotationProxyLogLevel       = configPrefix + "proxy-log-level"
	AnnotationProxyImage          = configPrefix + "proxy-image"
	AnnotationProxyVersion        = configPrefix + "proxy-version"
	AnnotationShutdownGracePeriod = configPrefix + "shutdown-grace-period"
	AnnotationProxyHTTP1Transport = configPrefix + "proxy-http1-transport"
	AnnotationWaitForAppExit      = configPrefix + "wait-for-app-exit"
	AnnotationAccessLog           = configPrefix + "access-log"
	AnnotationSidecarMode         = configPrefix + "sidecar-mode"
	AnnotationIPv6                = configPrefix + "ipv6"

	AnnotationDiscoveryIdleTimeout     = configPrefix + "proxy-discovery-idle-timeout"
	AnnotationDiscoveryLastKnownMaxAge = configPrefix + "proxy-discovery-last-known-max-age"
)

// Outcome is what an invalid annotation value leads to.
type Outcome int

const (
	// Refuse denies the pod with a message naming the annotation and the
	// accepted values.
	Refuse Outcome = iota
	// Default injects the pod with the default value and records a Warning
	// Event (and an admission warning) saying so.
	Default
)

func (o Outcome) String() string {
	if o == Refuse {
		return "refuse"
	}
	return "default + Event"
}

// setting is one config.conduit.dev annotation: how to validate it and
// what an invalid value leads to.
type setting struct {
	Name     string
	Accepted string // human description of the accepted values
	Outcome  Outcome
	check    func(string) error
}

func portsCheck(s string) error { _, err := ports.Parse(s, nil); return err }

// namedPorts are the port lists that, on a pod, may also name its
// containers' ports ("mysql"): they concern the pod's own ports. The
// injector gives the proxy and proxy-init their numbers; the destination
// service reads the names from the pod as well. A namespace's list names
// no port: its pods differ.
var namedPorts = map[string]bool{AnnotationOpaquePorts: true, AnnotationSkipInboundPorts: true}

func quantityCheck(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return err
	}
	if q.Sign() < 0 {
		return fmt.Errorf("negative quantity")
	}
	return nil
}

// Settings lists every config annotation with its outcome on an invalid
// value; docs/injector.md renders the same table.
var Settings = []setting{
	{AnnotationOpaquePorts, "comma-separated ports or ranges, e.g. 3306,8000-8100, and on a pod the names of its containers' ports", Refuse, portsCheck},
	{AnnotationSkipInboundPorts, "comma-separated ports or ranges, e.g. 22,8000-8100, and on a pod the names of its containers' ports", Refuse, portsCheck},
	{AnnotationSkipOutboundPorts, "comma-separated ports or ranges, e.g. 443,5432", Refuse, portsCheck},
	{AnnotationSkipSubnets, "comma-separated IPv4 and IPv6 CIDRs, e.g. 10.0.0.0/8,169.254.169.254/32,fd00::/8", Refuse,
		func(s string) error { _, err := iptables.ParseSubnets(s); return err }},
	{AnnotationProxyCPURequest, "a CPU quantity, e.g. 100m or 1", Default, quantityCheck},
	{AnnotationProxyMemoryRequest, "a memory quantity, e.g. 20Mi", Default, quantityCheck},
	{AnnotationProxyCPULimit, "a CPU quantity, e.g. 500m or 1", Default, quantityCheck},
	{AnnotationProxyMemoryLimit, "a memory quantity, e.g. 250Mi", Default, quantityCheck},
	{AnnotationProxyLogLevel, "debug, info, warn or error", Default,
		func(s string) error { _, err := logging.ParseLevel(s); return err }},
	{AnnotationProxyImage, "an image repository without tag, e.g. registry.example.com/conduit/proxy", Refuse, validImage},
	{AnnotationProxyVersion, "an image tag that is also a label value (at most 63 characters: letters, digits, '.', '_', '-', starting and ending with a letter or digit), e.g. v1.2.3", Refuse, validVersion},
	{AnnotationShutdownGracePeriod, "a positive Go duration, e.g. 30s or 2m", Default, positiveDuration},
	{AnnotationWaitForAppExit, "a Go duration ≥ 0, e.g. 30s (0s: the proxy drains at SIGTERM at once)", Default, nonNegativeDuration},
	{AnnotationDiscoveryIdleTimeout, "a positive Go duration, e.g. 5m (how long a target's discovery streams stay open unused)", Default, positiveDuration},
	{AnnotationDiscoveryLastKnownMaxAge, "a Go duration ≥ 0, e.g. 1h (how long what discovery said of an idle target is kept for a control-plane outage; 0s: not kept)", Default, nonNegativeDuration},
	{AnnotationAccessLog, "json (one line per request on the proxy's stderr; HTTP/1 then leaves the fast path)", Default, func(s string) error {
		if s != "json" {
			return fmt.Errorf("not json")
		}
		return nil
	}},
	{AnnotationSidecarMode, "native (an init container with restartPolicy Always, where the injector runs native) or regular (a regular container)", Default, func(s string) error {
		if s != "native" && s != "regular" {
			return fmt.Errorf("not native or regular")
		}
		return nil
	}},
	// What proxy-init (--ipv6) and the proxy (CONDUIT_PROXY_IPV6) both
	// take: lowercase only, since the proxy refuses anything else. Refused
	// rather than defaulted: the default, auto, meshes a dual-stack pod's
	// IPv6 connections where a mistyped off asked that they bypass the
	// proxy, and starts the pod without IPv6 where a mistyped on asked it
	// not to.
	{AnnotationIPv6, `auto (IPv6 meshed where the pod has it), "on" (proxy-init and the proxy fail without IPv6) or "off" (IPv6 connections bypass the proxy), quoted in YAML`, Refuse, checkIPv6Mode},
	{AnnotationProxyHTTP1Transport, "h2 (HTTP/1 multiplexed on one HTTP/2 connection per endpoint) or http1 (pooled HTTP/1.1)", Default, func(s string) error {
		if s != "h2" && s != "http1" {
			return fmt.Errorf("not h2 or http1")
		}
		return nil
	}},
}

func positiveDuration(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("not positive")
	}
	return nil
}

func nonNegativeDuration(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("negative")
	}
	return nil
}

// checkIPv6Mode accepts the IPv6 modes of proxy-init and the proxy, as the
// proxy reads them (ipv6mode.Parse: lowercase only).
func checkIPv6Mode(s string) error {
	_, err := ipv6mode.Parse(s)
	if err != nil && (s == "true" || s == "false") {
		// What an unquoted on or off becomes on its way through YAML 1.1.
		return fmt.Errorf("%w; unquoted in YAML, on and off read as true and false: quote them", err)
	}
	return err
}

// Denial is an admission refusal with a message for the user.
type Denial struct{ Message string }

func (d *Denial) Error() string { return d.Message }

// resolved holds the effective config annotations of a pod (the pod's
// value, else its namespace's) after validation.
type resolved struct {
	values   map[string]string // valid values only
	warnings []string          // invalid values replaced by the default
}

// resolveAnnotations merges namespace and pod annotations (the pod wins)
// and validates every config annotation. Values with outcome Refuse make it
// return a *Denial listing all of them.
func resolveAnnotations(nsAnn map[string]string, pod *corev1.Pod) (resolved, error) {
	r := resolved{values: map[string]string{}}
	var refusals []string
	for _, s := range Settings {
		v, from := pod.Annotations[s.Name], "pod"
		if _, ok := pod.Annotations[s.Name]; !ok {
			if v, ok = nsAnn[s.Name]; !ok {
				continue
			}
			from = "namespace"
		}
		v = strings.TrimSpace(v)
		check := s.check
		if from == "pod" && namedPorts[s.Name] {
			check = func(v string) error { _, err := ports.Parse(v, podports.Names(pod)); return err }
		}
		if err := check(v); err != nil {
			msg := fmt.Sprintf("annotation %s=%q (on the %s) is invalid: %v; accepted: %s", s.Name, v, from, err, s.Accepted)
			if s.Outcome == Refuse {
				refusals = append(refusals, msg)
			} else {
				r.warnings = append(r.warnings, msg+"; the default is used")
			}
			continue
		}
		r.values[s.Name] = v
	}
	if len(refusals) > 0 {
		return r, &Denial{Message: "conduit injector: " + strings.Join(refusals, "; ")}
	}
	return r, nil
}
