package destination

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// epState is the immutable endpoint set of a target at one point in time.
type epState struct {
	exists bool
	// addrs by "ip:port".
	addrs map[string]*pb.WeightedAddr
	// labels common to the set (namespace, service).
	labels map[string]string
	// allOpaque: every address is a pod that marks its port opaque (its
	// config.conduit.dev/opaque-ports, which the injector copies from its
	// namespace). A Service without the annotation is opaque then.
	allOpaque bool
}

// endpointTopic returns the topic id, dependencies and compute function of t.
func (x *Index) endpointTopic(t target) (string, []depKey, func() *epState) {
	switch {
	case !t.known:
		return "unknown", nil, func() *epState { return &epState{} }
	case t.ip.IsValid():
		if st, ok := x.clusterIPTarget(t); ok {
			return "svc:" + st.id(), []depKey{serviceDep(st.ns, st.name)}, func() *epState { return x.serviceEndpoints(st) }
		}
		return "ip:" + t.id(), []depKey{ipDep(t.ip.String())}, func() *epState { return x.podIPEndpoints(t) }
	default:
		return "svc:" + t.id(), []depKey{serviceDep(t.ns, t.name)}, func() *epState { return x.serviceEndpoints(t) }
	}
}

// clusterIPTarget resolves "ip:port" to the Service whose cluster IP it is,
// now: streams re-resolve at every wake-up, so that a Service created after
// the stream opened, or an IP handed to another Service, is followed (the
// Service handler wakes the IP's topics). The target keeps the family of
// the IP when it is not the Service's primary one.
func (x *Index) clusterIPTarget(t target) (target, bool) {
	svc := x.serviceByIP(t.ip.String())
	if svc == nil {
		return target{}, false
	}
	st := target{ns: svc.Namespace, name: svc.Name, port: t.port, known: true}
	if f := addrFamily(t.ip); f != primaryFamily(svc) {
		st.family = f
	}
	return st, true
}

func (x *Index) serviceByIP(ip string) *corev1.Service {
	objs, _ := x.services.GetIndexer().ByIndex(indexIP, ip)
	for _, o := range objs {
		if s, ok := o.(*corev1.Service); ok {
			return s
		}
	}
	return nil
}

// addrFamily is the EndpointSlice address type of ip.
func addrFamily(ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return string(discoveryv1.AddressTypeIPv4)
	}
	return string(discoveryv1.AddressTypeIPv6)
}

// primaryFamily is the Service's primary address family: its first
// ipFamilies entry (the family of spec.clusterIP, and of the first address
// DNS returns), else the family of its first cluster IP, else IPv4.
func primaryFamily(svc *corev1.Service) string {
	if len(svc.Spec.IPFamilies) > 0 {
		return string(svc.Spec.IPFamilies[0])
	}
	for _, s := range svc.Spec.ClusterIPs {
		if ip, err := netip.ParseAddr(s); err == nil {
			return addrFamily(ip)
		}
	}
	return string(discoveryv1.AddressTypeIPv4)
}

// podByIP returns the running pod whose IP is ip.
func (x *Index) podByIP(ip string) *corev1.Pod {
	objs, _ := x.pods.GetIndexer().ByIndex(indexIP, ip)
	var best *corev1.Pod
	for _, o := range objs {
		p, ok := o.(*corev1.Pod)
		if !ok || podTerminal(p) {
			continue
		}
		if best == nil || p.Status.Phase == corev1.PodRunning {
			best = p
		}
	}
	return best
}

// podIPEndpoints resolves "ip:port" of a pod to that pod.
func (x *Index) podIPEndpoints(t target) *epState {
	p := x.podByIP(t.ip.String())
	if p == nil {
		return &epState{}
	}
	wa := x.podAddr(p, t.ip.String(), t.port, nil, 0)
	return &epState{
		exists: true,
		addrs:  map[string]*pb.WeightedAddr{addrKey(wa.Addr): wa},
		labels: map[string]string{"namespace": p.Namespace},
	}
}

// serviceEndpoints resolves a Service (or one pod of a headless Service) and port.
func (x *Index) serviceEndpoints(t target) *epState {
	svc, err := x.svcLister.Services(t.ns).Get(t.name)
	if err != nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		// Unknown, or ExternalName: the proxy forwards to the original destination.
		return &epState{}
	}
	st := &epState{exists: true, addrs: map[string]*pb.WeightedAddr{}, labels: map[string]string{"namespace": t.ns, "service": t.name}}

	// The authority's port is a Service port; each slice resolves its name to a target port.
	var portName string
	matched := false
	for _, sp := range svc.Spec.Ports {
		// The proxies carry TCP: a UDP port of the same number (DNS) is not it.
		if uint32(sp.Port) == t.port && (sp.Protocol == "" || sp.Protocol == corev1.ProtocolTCP) {
			portName, matched = sp.Name, true
			break
		}
	}
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	if !matched && !headless {
		return st // a port the Service does not expose
	}
	svcOpaque := x.serviceOpaquePorts(svc)

	// A dual-stack Service has one set of slices per family, each listing
	// every pod: serve one family, or each pod would be served twice (twice
	// its share of the load) and in a family the client may not reach. The
	// family is the requested cluster IP's, else the Service's primary one;
	// when no slice is of that family, the slices of the other.
	family := t.family
	if family == "" {
		family = primaryFamily(svc)
	}
	objs, _ := x.slices.GetIndexer().ByIndex(indexService, t.ns+"/"+t.name)
	slices := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	ofFamily := 0
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok && s.AddressType != discoveryv1.AddressTypeFQDN {
			slices = append(slices, s)
			if string(s.AddressType) == family {
				ofFamily++
			}
		}
	}

	// Every endpoint of the target is classified before any is served:
	// whether to fall back to terminating endpoints is decided across all
	// the slices of the served family, on the target's port (and, for a
	// headless Service's pod name, among that pod's endpoints), not slice
	// by slice: a Service whose ready pods are listed in one slice and its
	// draining ones in another serves only the ready ones.
	var ready, draining []candidate
	for _, s := range slices {
		if ofFamily > 0 && string(s.AddressType) != family {
			continue
		}
		targetPort := uint32(0)
		if matched {
			for _, p := range s.Ports {
				name := ""
				if p.Name != nil {
					name = *p.Name
				}
				if name == portName && p.Port != nil {
					targetPort = uint32(*p.Port)
				}
			}
		} else {
			targetPort = t.port // headless, unexposed port: pods are reached directly
		}
		if targetPort == 0 {
			continue
		}
		for i := range s.Endpoints {
			ep := &s.Endpoints[i]
			if t.hostname != "" && (ep.Hostname == nil || *ep.Hostname != t.hostname) {
				if ep.TargetRef == nil || ep.TargetRef.Name != t.hostname {
					continue
				}
			}
			if len(ep.Addresses) == 0 || !endpointReady(ep) && !endpointServing(ep) {
				continue // no address, or neither ready nor serving (starting, failing its probe)
			}
			c := candidate{ep: ep, ip: ep.Addresses[0], port: targetPort}
			terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				// The pod cache is authoritative for the pod's life: an endpoint
				// whose pod is gone or finished is dropped at once, even while
				// the EndpointSlice controller has yet to catch up, and one whose
				// pod is being deleted is terminating from that moment on.
				c.pod = x.endpointPod(s, ep)
				if c.pod == nil || podTerminal(c.pod) || !sameInstance(ep, c.pod, c.ip) {
					continue
				}
				terminating = terminating || c.pod.DeletionTimestamp != nil
			}
			switch {
			case endpointReady(ep) && !terminating:
				ready = append(ready, c)
			case terminating && endpointServing(ep):
				draining = append(draining, c)
			}
		}
	}
	// As kube-proxy does (KEP-1669): when no endpoint is ready, the ones
	// still serving while they terminate (a preStop hook, a drain) are
	// served, rather than none; once one is ready, only the ready ones.
	chosen := ready
	if len(chosen) == 0 {
		chosen = draining
	}

	opaque := 0
	for _, c := range chosen {
		var wa *pb.WeightedAddr
		if c.pod != nil {
			wa = x.podAddr(c.pod, c.ip, c.port, svcOpaque, t.port)
			if _, seen := st.addrs[addrKey(wa.Addr)]; !seen && x.podOpaquePorts(c.pod).has(c.port) && !x.skippedInbound(c.pod, c.port) {
				opaque++
			}
		} else {
			wa = &pb.WeightedAddr{Addr: tcpAddr(c.ip, c.port), Weight: DefaultWeight, MetricLabels: map[string]string{}}
			x.setZone(wa, c.ep.Zone, deref(c.ep.NodeName))
		}
		if c.ep.Zone != nil && *c.ep.Zone != "" {
			wa.MetricLabels["zone"] = *c.ep.Zone
		}
		st.addrs[addrKey(wa.Addr)] = wa
	}
	st.allOpaque = len(st.addrs) > 0 && opaque == len(st.addrs)
	return st
}

// candidate is an endpoint of a target that may be served: its address,
// target port and, when its targetRef is a pod, the pod (alive, the one the
// endpoint was written for).
type candidate struct {
	ep   *discoveryv1.Endpoint
	pod  *corev1.Pod
	ip   string
	port uint32
}

// endpointReady is the endpoint's ready condition; unset means ready.
func endpointReady(ep *discoveryv1.Endpoint) bool {
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}

// endpointServing is the endpoint's serving condition (ready, whether or
// not it is terminating); unset defers to ready.
func endpointServing(ep *discoveryv1.Endpoint) bool {
	if ep.Conditions.Serving != nil {
		return *ep.Conditions.Serving
	}
	return endpointReady(ep)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (x *Index) endpointPod(s *discoveryv1.EndpointSlice, ep *discoveryv1.Endpoint) *corev1.Pod {
	if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
		return nil
	}
	ns := ep.TargetRef.Namespace
	if ns == "" {
		ns = s.Namespace
	}
	p, err := x.podLister.Pods(ns).Get(ep.TargetRef.Name)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			x.log.Debug("pod lookup failed", "pod", ns+"/"+ep.TargetRef.Name, "err", err)
		}
		return nil
	}
	return p
}

// sameInstance reports whether pod p, found by the name in ep's targetRef,
// is the pod the endpoint was written for, not one re-created under the same
// name (a StatefulSet's) while the EndpointSlice still holds the old pod's
// address: the targetRef's uid when set (the EndpointSlice controller sets
// it), else the address must be one of the pod's.
func sameInstance(ep *discoveryv1.Endpoint, p *corev1.Pod, addr string) bool {
	if uid := ep.TargetRef.UID; uid != "" {
		return uid == p.UID
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, s := range podIPs(p) {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Unmap() == a.Unmap() {
			return true
		}
	}
	return false
}

func (x *Index) setZone(wa *pb.WeightedAddr, zone *string, node string) {
	if zone != nil && *zone != "" {
		wa.MetricLabels["zone"] = *zone
		return
	}
	if node == "" {
		return
	}
	if n, err := x.nodeLister.Get(node); err == nil && n.Labels[ZoneLabel] != "" {
		wa.MetricLabels["zone"] = n.Labels[ZoneLabel]
	}
}

// serviceOpaquePorts returns the Service's opaque ports (Service port
// numbers, or the names of its ports), or nil when the Service does not set
// the annotation. An invalid item is left out and reported once, with a
// Warning Event on the Service: no webhook checks a Service's annotations.
func (x *Index) serviceOpaquePorts(svc *corev1.Service) portSet {
	v, ok := svc.Annotations[OpaquePortsAnnotation]
	if !ok {
		return nil
	}
	s, err := parseServicePorts(v, svc)
	if err != nil {
		x.reportBadService(svc, v, err)
	}
	return s
}

// reportBadService logs an invalid opaque-ports annotation of a Service and
// records a Warning Event on it, once per Service and value.
func (x *Index) reportBadService(svc *corev1.Service, value string, err error) {
	if !x.firstReport("svc/" + string(svc.UID) + "/" + svc.Namespace + "/" + svc.Name + "=" + value) {
		return
	}
	msg := fmt.Sprintf("annotation %s=%q: %v; the valid items apply (accepted: ports, ranges and names of the Service's ports, e.g. 3306,8000-8100,mysql)", OpaquePortsAnnotation, value, err)
	x.log.Warn("invalid opaque-ports annotation on a Service", "service", svc.Namespace+"/"+svc.Name, "err", msg)
	if x.cfg.Recorder != nil {
		ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID, ResourceVersion: svc.ResourceVersion}
		x.cfg.Recorder.Event(ref, corev1.EventTypeWarning, "InvalidOpaquePorts", msg)
	}
}

// podOpaquePorts returns the pod's opaque ports, or the default list.
func (x *Index) podOpaquePorts(p *corev1.Pod) portSet {
	v, ok := p.Annotations[OpaquePortsAnnotation]
	if !ok {
		return x.defaultOpaque
	}
	s, err := parsePorts(v, p)
	if err != nil && x.firstReport("pod/"+string(p.UID)+"/"+p.Namespace+"/"+p.Name+"="+v) {
		// Read at every recompute of every Service the pod is behind: logged
		// once per pod and value. (The injector refuses such a value in the
		// pods it injects; an uninjected pod may still carry one.)
		x.log.Warn("bad opaque-ports annotation on pod; the valid items apply", "pod", p.Namespace+"/"+p.Name, "err", err)
	}
	return s
}

// meshed reports whether the pod runs Conduit's proxy.
func meshed(p *corev1.Pod) bool { return p.Labels[ControlPlaneNSLabel] != "" }

// identity returns the pod's workload identity.
func (x *Index) identity(p *corev1.Pod) string {
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return sa + "." + p.Namespace + ".serviceaccount.identity." + p.Labels[ControlPlaneNSLabel] + "." + x.cfg.TrustDomain
}

// podAddr builds the endpoint of pod p at ip:port. svcOpaque and svcPort,
// when set, add the Service's opaque ports to the pod's.
func (x *Index) podAddr(p *corev1.Pod, ip string, port uint32, svcOpaque portSet, svcPort uint32) *pb.WeightedAddr {
	wa := &pb.WeightedAddr{
		Addr:         tcpAddr(ip, port),
		Weight:       DefaultWeight,
		MetricLabels: podLabels(p),
	}
	x.setZone(wa, nil, p.Spec.NodeName)
	if meshed(p) && !x.skippedInbound(p, port) {
		id := x.identity(p)
		wa.TlsIdentity = &pb.TlsIdentity{DnsLikeIdentity: id, ServerName: id}
		if x.podOpaquePorts(p).has(port) || (svcOpaque != nil && svcOpaque.has(svcPort)) {
			wa.ProtocolHint = &pb.ProtocolHint{Protocol: &pb.ProtocolHint_Opaque_{Opaque: &pb.ProtocolHint_Opaque{}}, InboundPort: ProxyInboundPort}
		} else {
			wa.ProtocolHint = &pb.ProtocolHint{Protocol: &pb.ProtocolHint_H2_{H2: &pb.ProtocolHint_H2{}}}
		}
	}
	for _, a := range x.cfg.Annotators {
		a.Annotate(context.Background(), wa, p)
	}
	return wa
}

func (x *Index) skippedInbound(p *corev1.Pod, port uint32) bool {
	v, ok := p.Annotations[SkipInboundPortsAnnotation]
	if !ok {
		return false
	}
	s, _ := parsePorts(v, p)
	return s.has(port)
}

// podLabels are the per-endpoint metric labels of a pod.
func podLabels(p *corev1.Pod) map[string]string {
	l := map[string]string{"pod": p.Name}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	l["serviceaccount"] = sa
	for _, o := range p.OwnerReferences {
		if !isController(o) { // sameControllers must compare what is read here
			continue
		}
		kind := ownerLabel(o.Kind)
		name := o.Name
		// A ReplicaSet named <deployment>-<pod-template-hash> belongs to a Deployment.
		if o.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(name, "-"+h) {
				kind, name = "deployment", strings.TrimSuffix(name, "-"+h)
			}
		}
		l[kind] = name
	}
	return l
}

// ownerLabel is the metric label naming a pod's controller of kind: the
// lowercased kind, except a Job's, k8s_job: the proxies prefix these labels
// with dst_, and Prometheus relabels a scraped pod's Job as k8s_job, since
// job is its own label (the scrape job); both names must agree.
func ownerLabel(kind string) string {
	if kind == "Job" {
		return "k8s_job"
	}
	return strings.ToLower(kind)
}

func tcpAddr(ip string, port uint32) *pb.TcpAddress {
	if a, err := netip.ParseAddr(ip); err == nil {
		ip = a.Unmap().String()
	}
	return &pb.TcpAddress{Ip: ip, Port: port}
}

func addrKey(a *pb.TcpAddress) string {
	return net.JoinHostPort(a.GetIp(), strconv.Itoa(int(a.GetPort())))
}
