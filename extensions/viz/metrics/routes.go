package metrics

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ServiceProfileGVR is the ServiceProfile resource (serviceprofiles.conduit.dev/v1alpha2).
var ServiceProfileGVR = schema.GroupVersionResource{Group: "conduit.dev", Version: "v1alpha2", Resource: "serviceprofiles"}

// DefaultRoute names the requests that matched no route of a service profile.
const DefaultRoute = "[DEFAULT]"

// RoutesRequest asks for the per-route metrics of a service or a workload.
type RoutesRequest struct {
	Resource Resource `json:"resource"`
	Window   string   `json:"window,omitempty"`
}

// RouteRow is the golden metrics of one route.
type RouteRow struct {
	Route       string   `json:"route"`
	Authority   string   `json:"authority"` // the service, e.g. web.emojivoto.svc.cluster.local:80
	SuccessRate *float64 `json:"successRate"`
	RPS         *float64 `json:"rps"`
	LatencyP50  *float64 `json:"latencyP50Ms"`
	LatencyP95  *float64 `json:"latencyP95Ms"`
	LatencyP99  *float64 `json:"latencyP99Ms"`
}

// Routes computes per-route metrics of the traffic to a service or a
// workload. Routes are matched by the client's proxy, against the profile of
// the Service it calls, so they are measured on the client side: from the
// outbound response metrics of the meshed clients, labelled with the route
// name (label route, empty when no route matched) — the destination's own
// proxy labels its inbound metrics with no route. Requests from clients
// outside the mesh are not counted. The routes of the service's profile that
// carry no traffic are listed too.
func (e *Engine) Routes(ctx context.Context, req RoutesRequest) ([]RouteRow, error) {
	window, err := ParseWindow(req.Window)
	if err != nil {
		return nil, err
	}
	r := req.Resource
	if r.Name == "" || r.Kind == KindNamespace {
		return nil, badRequest("routes are reported for one service or workload (e.g. svc/web or deploy/web), not %s", r)
	}
	if _, err := objects(ctx, e.Kube, r, false); err != nil {
		return nil, err // no such object
	}
	type rk struct{ route, authority string }
	accs := map[rk]*acc{}
	get := func(k rk) *acc {
		if accs[k] == nil {
			accs[k] = &acc{buckets: map[float64]float64{}}
		}
		return accs[k]
	}
	sel := e.routesSelector(r)
	w := promDuration(window)
	reqs, err := e.Prom.Query(ctx, fmt.Sprintf("sum by (route, authority, classification) (rate(response_total{%s}[%s]))", sel, w))
	if err != nil {
		return nil, err
	}
	lat, err := e.Prom.Query(ctx, fmt.Sprintf("sum by (route, authority, le) (rate(response_latency_ms_bucket{%s}[%s]))", sel, w))
	if err != nil {
		return nil, err
	}
	keyOf := func(l map[string]string) rk {
		route := l["route"]
		if route == "" {
			route = DefaultRoute
		}
		return rk{route, l["authority"]}
	}
	for _, s := range reqs {
		a := get(keyOf(s.Labels))
		a.total += s.Value
		if s.Labels["classification"] == "success" {
			a.success += s.Value
		}
	}
	for _, s := range lat {
		if le, ok := parseLe(s.Labels["le"]); ok {
			get(keyOf(s.Labels)).buckets[le] += s.Value
		}
	}
	// Routes declared in the service's profile, with or without traffic.
	if e.Dynamic != nil && r.Kind == KindService {
		fqdn := fmt.Sprintf("%s.%s.svc.%s", r.Name, r.Namespace, e.clusterDomain())
		sp, err := e.Dynamic.Resource(ServiceProfileGVR).Namespace(r.Namespace).Get(ctx, fqdn, metav1.GetOptions{})
		if err == nil {
			routes := profileRoutes(sp.Object)
			for _, name := range routes {
				found := false
				for k := range accs {
					found = found || k.route == name
				}
				if !found {
					get(rk{name, fqdn})
				}
			}
		}
	}
	out := make([]RouteRow, 0, len(accs))
	for k, a := range accs {
		row := RouteRow{Route: k.route, Authority: k.authority}
		if a.total > 0 {
			row.RPS = ptr(a.total)
			row.SuccessRate = ptr(a.success / a.total)
		}
		bs := make([]bucket, 0, len(a.buckets))
		for le, c := range a.buckets {
			bs = append(bs, bucket{le, c})
		}
		for q, dst := range map[float64]**float64{0.5: &row.LatencyP50, 0.95: &row.LatencyP95, 0.99: &row.LatencyP99} {
			if v, ok := quantile(q, bs); ok {
				*dst = ptr(v)
			}
		}
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Route == DefaultRoute) != (b.Route == DefaultRoute) {
			return b.Route == DefaultRoute
		}
		if a.Route != b.Route {
			return a.Route < b.Route
		}
		return a.Authority < b.Authority
	})
	return out, nil
}

// routesSelector selects the outbound series of the meshed clients' proxies
// whose destination is r. For a Service, the client's proxy records the
// Service's name as it resolved it, <name>.<ns>.svc.<cluster domain>:<port>
// (proxy/outbound's Normalize), in the authority label; for a workload or a
// pod, the destination's metric labels (dst_namespace, dst_<kind>) name it.
func (e *Engine) routesSelector(r Resource) selector {
	sel := selector{"direction": "outbound"}
	if r.Kind == KindService {
		sel["authority"+reMatch] = serviceAuthorityRE(r.Name, r.Namespace, e.clusterDomain())
		return sel
	}
	sel["dst_namespace"] = r.Namespace
	sel[dstLabel(r.Kind)] = r.Name
	return sel
}

// serviceAuthorityRE matches the authority label of requests to a Service,
// with any port (PromQL anchors regular expressions at both ends).
func serviceAuthorityRE(name, ns, domain string) string {
	return regexp.QuoteMeta(name+"."+ns+".svc."+domain) + "(:[0-9]+)?"
}

func (e *Engine) clusterDomain() string {
	if e.ClusterDomain != "" {
		return e.ClusterDomain
	}
	return "cluster.local"
}

// profileRoutes returns the route names of a ServiceProfile object.
func profileRoutes(obj map[string]any) []string {
	spec, _ := obj["spec"].(map[string]any)
	list, _ := spec["routes"].([]any)
	var names []string
	for _, r := range list {
		if m, ok := r.(map[string]any); ok {
			if n, ok := m["name"].(string); ok && strings.TrimSpace(n) != "" {
				names = append(names, n)
			}
		}
	}
	return names
}
