package destination

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// profileState is the profile of a target at one point in time.
type profileState = pb.DestinationProfile

// Default retry budget, served when a profile sets none.
var defaultRetryBudget = &pb.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, Ttl: durationpb.New(10 * time.Second)}

// contextToken is the calling proxy's CONDUIT_PROXY_DESTINATION_CONTEXT.
type contextToken struct {
	NS       string `json:"ns"`
	NodeName string `json:"nodeName"`
	Pod      string `json:"pod"`
}

func parseContextToken(s string) contextToken {
	var t contextToken
	if s != "" {
		_ = json.Unmarshal([]byte(s), &t) // a bad token only loses client-namespace overrides
	}
	return t
}

// profileTopic returns the topic id, dependencies and compute function of
// the profile of t as seen from a client in clientNS.
func (x *Index) profileTopic(t target, clientNS string) (string, []depKey, func() *profileState) {
	switch {
	case !t.known:
		return "unknown", nil, func() *profileState { return &pb.DestinationProfile{RetryBudget: defaultRetryBudget} }
	case t.ip.IsValid():
		if st, ok := x.clusterIPTarget(t); ok {
			return "svc:" + st.id() + "@" + clientNS, []depKey{serviceDep(st.ns, st.name)}, func() *profileState { return x.serviceProfile(st, clientNS) }
		}
		return "ip:" + t.id(), []depKey{ipDep(t.ip.String())}, func() *profileState { return x.podProfile(t) }
	default:
		return "svc:" + t.id() + "@" + clientNS, []depKey{serviceDep(t.ns, t.name)}, func() *profileState { return x.serviceProfile(t, clientNS) }
	}
}

// podProfile is the profile of "ip:port": no routes, the pod as endpoint.
func (x *Index) podProfile(t target) *profileState {
	out := &pb.DestinationProfile{RetryBudget: defaultRetryBudget}
	p := x.podByIP(t.ip.String())
	if p == nil {
		out.OpaqueProtocol = x.defaultOpaque.has(t.port)
		out.Endpoint = &pb.WeightedAddr{Addr: tcpAddr(t.ip.String(), t.port), Weight: DefaultWeight}
		return out
	}
	out.Endpoint = x.podAddr(p, t.ip.String(), t.port, nil, 0)
	out.OpaqueProtocol = x.podOpaquePorts(p).has(t.port) && !x.skippedInbound(p, t.port)
	return out
}

// serviceProfile is the profile of a Service port.
func (x *Index) serviceProfile(t target, clientNS string) *profileState {
	out := &pb.DestinationProfile{RetryBudget: defaultRetryBudget}
	svc, err := x.svcLister.Services(t.ns).Get(t.name)
	if err != nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return out
	}
	fqdn := t.name + "." + t.ns + ".svc." + x.cfg.ClusterDomain
	out.FullyQualifiedName = fqdn
	if s := x.serviceOpaquePorts(svc); s != nil {
		out.OpaqueProtocol = s.has(t.port)
	} else {
		// A port opaque on every pod behind it is opaque through the
		// Service too, or client proxies would wait for a
		// server-speaks-first client to speak.
		out.OpaqueProtocol = x.defaultOpaque.has(t.port) || x.serviceEndpoints(t).allOpaque
	}
	if t.hostname != "" {
		// One pod of a headless Service: tell the proxy which one.
		if st := x.serviceEndpoints(t); len(st.addrs) == 1 {
			for _, wa := range st.addrs {
				out.Endpoint = wa
			}
		}
	}
	if sp := x.lookupProfile(clientNS, fqdn, t.ns); sp != nil {
		routes, errs := TranslateRoutes(sp.Spec.Routes)
		out.Routes = routes
		if len(errs) > 0 {
			x.reportBadProfile(sp, errs)
		}
		if rb := sp.Spec.RetryBudget; rb != nil {
			ttl, err := time.ParseDuration(rb.TTL)
			if err != nil || ttl < 0 {
				ttl = 10 * time.Second
			}
			out.RetryBudget = &pb.RetryBudget{RetryRatio: rb.RetryRatio, MinRetriesPerSecond: rb.MinRetriesPerSecond, Ttl: durationpb.New(ttl)}
		}
		for _, d := range sp.Spec.DstOverrides {
			out.DstOverrides = append(out.DstOverrides, &pb.WeightedDst{Authority: d.Authority, Weight: d.Weight})
		}
	}
	if len(out.DstOverrides) == 0 {
		out.DstOverrides = x.trafficSplit(t)
	}
	return out
}

// lookupProfile returns the ServiceProfile named fqdn in the client's
// namespace (an override) or else in the Service's namespace.
func (x *Index) lookupProfile(clientNS, fqdn, svcNS string) *v1alpha2.ServiceProfile {
	if x.profilesInf == nil {
		return nil
	}
	for _, ns := range []string{clientNS, svcNS} {
		if ns == "" {
			continue
		}
		obj, ok, err := x.profilesInf.GetIndexer().GetByKey(ns + "/" + fqdn)
		if err != nil || !ok {
			continue
		}
		u, isU := obj.(*unstructured.Unstructured)
		if !isU {
			continue
		}
		sp, err := v1alpha2.FromUnstructured(u.Object)
		if err != nil {
			x.reportBadProfile(&v1alpha2.ServiceProfile{ObjectMeta: *metaOf(u)}, []error{err})
			continue
		}
		return sp
	}
	return nil
}

// trafficSplit serves an SMI TrafficSplit whose root service is t as dstOverrides.
func (x *Index) trafficSplit(t target) []*pb.WeightedDst {
	if x.splitsInf == nil {
		return nil
	}
	objs, _ := x.splitsInf.GetIndexer().ByIndex(indexService, t.ns+"/"+t.name)
	// The index returns its objects in map order: when several splits name
	// the same root Service, the oldest wins, then the first by name, on
	// every recompute and every replica alike.
	splits := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			splits = append(splits, u)
		}
	}
	slices.SortFunc(splits, func(a, b *unstructured.Unstructured) int {
		return cmp.Or(a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time), strings.Compare(a.GetName(), b.GetName()))
	})
	for _, u := range splits {
		backends, _, _ := unstructured.NestedSlice(u.Object, "spec", "backends")
		var out []*pb.WeightedDst
		for _, b := range backends {
			m, ok := b.(map[string]any)
			if !ok {
				continue
			}
			svc, _, _ := unstructured.NestedString(m, "service")
			w, _, _ := unstructured.NestedInt64(m, "weight")
			if svc == "" || w < 0 {
				continue
			}
			// The wire's weight is a uint32: clamp, not wrap (2^32 would be 0).
			w = min(w, math.MaxUint32)
			out = append(out, &pb.WeightedDst{
				Authority: fmt.Sprintf("%s.%s.svc.%s:%d", svc, t.ns, x.cfg.ClusterDomain, t.port),
				Weight:    uint32(w),
			})
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// reportBadProfile logs and records an Event once per profile version.
// firstReport reports whether key (an invalid object's version) is reported
// for the first time, and remembers it.
func (x *Index) firstReport(key string) bool {
	x.badMu.Lock()
	defer x.badMu.Unlock()
	if _, seen := x.badSeen[key]; seen {
		return false
	}
	if len(x.badSeen) >= maxBadSeen {
		// Keys of deleted objects and of values since changed are never
		// looked up again: start over rather than grow for the life of
		// the process (at worst, a value still bad is reported again).
		clear(x.badSeen)
	}
	x.badSeen[key] = struct{}{}
	return true
}

// maxBadSeen bounds the reports remembered by firstReport.
const maxBadSeen = 10000

func (x *Index) reportBadProfile(sp *v1alpha2.ServiceProfile, errs []error) {
	if !x.firstReport(string(sp.UID) + "/" + sp.Namespace + "/" + sp.Name + "@" + sp.ResourceVersion) {
		return
	}
	msg := errors.Join(errs...).Error()
	x.log.Warn("service profile has invalid routes; they are not served", "profile", sp.Namespace+"/"+sp.Name, "err", msg)
	if x.cfg.Recorder != nil {
		ref := &corev1.ObjectReference{
			APIVersion: v1alpha2.SchemeGroupVersion.String(), Kind: v1alpha2.Kind,
			Namespace: sp.Namespace, Name: sp.Name, UID: sp.UID, ResourceVersion: sp.ResourceVersion,
		}
		x.cfg.Recorder.Event(ref, corev1.EventTypeWarning, "InvalidRoute", msg)
	}
}

// TranslateRoutes converts routes to their wire form. A route that cannot
// be served (a path regex that RE2 rejects, a bad timeout) is left out and
// reported in errs, each error naming the field.
func TranslateRoutes(routes []v1alpha2.RouteSpec) (out []*pb.Route, errs []error) {
	for i, r := range routes {
		field := fmt.Sprintf("spec.routes[%d]", i)
		rt, err := translateRoute(r, field)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%q): %w", field, r.Name, err))
			continue
		}
		out = append(out, rt)
	}
	return out, errs
}

func translateRoute(r v1alpha2.RouteSpec, field string) (*pb.Route, error) {
	if r.Condition == nil {
		return nil, fmt.Errorf("%s.condition: required", field)
	}
	cond, err := translateRequestMatch(r.Condition, field+".condition")
	if err != nil {
		return nil, err
	}
	rt := &pb.Route{Condition: cond, IsRetryable: r.IsRetryable, MetricsLabels: map[string]string{"route": r.Name}}
	for j, rc := range r.ResponseClasses {
		if rc.Condition == nil {
			return nil, fmt.Errorf("%s.responseClasses[%d].condition: required", field, j)
		}
		m, err := translateResponseMatch(rc.Condition, fmt.Sprintf("%s.responseClasses[%d].condition", field, j))
		if err != nil {
			return nil, err
		}
		rt.ResponseClasses = append(rt.ResponseClasses, &pb.ResponseClass{Condition: m, IsFailure: rc.IsFailure})
	}
	if r.Timeout != "" {
		d, err := time.ParseDuration(r.Timeout)
		if err != nil {
			return nil, fmt.Errorf("%s.timeout: %q is not a duration such as 300ms or 2s", field, r.Timeout)
		}
		if d < 0 {
			return nil, fmt.Errorf("%s.timeout: %q is negative", field, r.Timeout)
		}
		rt.Timeout = durationpb.New(d)
	}
	return rt, nil
}

func translateRequestMatch(m *v1alpha2.RequestMatch, field string) (*pb.RequestMatch, error) {
	c, err := translateCombinators(m.All, m.Any, m.Not, field, translateRequestMatch)
	if err != nil {
		return nil, err
	}
	set := c.set
	var out *pb.RequestMatch
	switch {
	case c.all != nil:
		out = &pb.RequestMatch{Match: &pb.RequestMatch_All{All: &pb.RequestMatch_Seq{Matches: c.all}}}
	case c.any != nil:
		out = &pb.RequestMatch{Match: &pb.RequestMatch_Any{Any: &pb.RequestMatch_Seq{Matches: c.any}}}
	case c.not != nil:
		out = &pb.RequestMatch{Match: &pb.RequestMatch_Not{Not: c.not}}
	}
	if m.PathRegex != "" {
		set++
		if _, err := regexp.Compile(m.PathRegex); err != nil {
			return nil, fmt.Errorf("%s.pathRegex: %q is not a valid RE2 regular expression: %w", field, m.PathRegex, err)
		}
		out = &pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: m.PathRegex}}}
	}
	if m.Method != "" {
		set++
		out = &pb.RequestMatch{Match: &pb.RequestMatch_Method{Method: strings.ToUpper(m.Method)}}
	}
	if set != 1 {
		return nil, fmt.Errorf("%s: exactly one of all, any, not, pathRegex, method must be set (found %d)", field, set)
	}
	return out, nil
}

func translateResponseMatch(m *v1alpha2.ResponseMatch, field string) (*pb.ResponseMatch, error) {
	c, err := translateCombinators(m.All, m.Any, m.Not, field, translateResponseMatch)
	if err != nil {
		return nil, err
	}
	set := c.set
	var out *pb.ResponseMatch
	switch {
	case c.all != nil:
		out = &pb.ResponseMatch{Match: &pb.ResponseMatch_All{All: &pb.ResponseMatch_Seq{Matches: c.all}}}
	case c.any != nil:
		out = &pb.ResponseMatch{Match: &pb.ResponseMatch_Any{Any: &pb.ResponseMatch_Seq{Matches: c.any}}}
	case c.not != nil:
		out = &pb.ResponseMatch{Match: &pb.ResponseMatch_Not{Not: c.not}}
	}
	if m.Status != nil {
		set++
		lo, hi := m.Status.Min, m.Status.Max
		if lo == 0 {
			lo = 100
		}
		if hi == 0 {
			hi = 599
		}
		if lo > hi {
			return nil, fmt.Errorf("%s.status: min %d is greater than max %d", field, lo, hi)
		}
		out = &pb.ResponseMatch{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: lo, Max: hi}}}
	}
	if set != 1 {
		return nil, fmt.Errorf("%s: exactly one of all, any, not, status must be set (found %d)", field, set)
	}
	return out, nil
}

// combinators are the translated all, any and not of a request or response
// match, and how many of the three were set.
type combinators[Out any] struct {
	all, any []Out
	not      Out
	set      int
}

// translateCombinators translates the combinators that request and response
// matches share, each nested match with tr under its own field path (all[i],
// any[i], not), in that order, so that the first error is the same whatever
// else is set.
func translateCombinators[In, Out any](all, anyOf []In, not *In, field string, tr func(*In, string) (Out, error)) (combinators[Out], error) {
	var c combinators[Out]
	seq := func(ms []In, name string) ([]Out, error) {
		out := make([]Out, 0, len(ms))
		for i := range ms {
			o, err := tr(&ms[i], fmt.Sprintf("%s.%s[%d]", field, name, i))
			if err != nil {
				return nil, err
			}
			out = append(out, o)
		}
		return out, nil
	}
	var err error
	if len(all) > 0 {
		c.set++
		if c.all, err = seq(all, "all"); err != nil {
			return c, err
		}
	}
	if len(anyOf) > 0 {
		c.set++
		if c.any, err = seq(anyOf, "any"); err != nil {
			return c, err
		}
	}
	if not != nil {
		c.set++
		if c.not, err = tr(not, field+".not"); err != nil {
			return c, err
		}
	}
	return c, nil
}

func metaOf(u *unstructured.Unstructured) *metav1.ObjectMeta {
	return &metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion()}
}
