package metrics

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// DefaultWindow is the time window stats are computed over.
const DefaultWindow = time.Minute

// Engine answers the viz queries from Prometheus and the Kubernetes API.
type Engine struct {
	Prom Querier
	Kube kubernetes.Interface
	// Dynamic reads service profiles; nil lists only routes with traffic.
	Dynamic dynamic.Interface
	// ControlPlaneNamespace and TrustDomain name workload identities.
	ControlPlaneNamespace, TrustDomain string
	// ClusterDomain names services (default cluster.local).
	ClusterDomain string
	// Now is the clock of charts (default time.Now).
	Now func() time.Time
}

// StatRequest asks for the golden metrics of Resource (every object of its
// kind when it has no name), optionally only of its traffic to To or from From.
type StatRequest struct {
	Resource      Resource  `json:"resource"`
	AllNamespaces bool      `json:"allNamespaces,omitempty"`
	From          *Resource `json:"from,omitempty"`
	To            *Resource `json:"to,omitempty"`
	Window        string    `json:"window,omitempty"` // Go duration, default 1m
}

// StatRow is the golden metrics of one resource. Pointers are nil when there
// was no traffic in the window.
type StatRow struct {
	Namespace      string   `json:"namespace,omitempty"`
	Kind           string   `json:"kind"`
	Name           string   `json:"name"`
	MeshedPods     int      `json:"meshedPods"`
	TotalPods      int      `json:"totalPods"`
	SuccessRate    *float64 `json:"successRate"` // 0..1
	RPS            *float64 `json:"rps"`
	LatencyP50     *float64 `json:"latencyP50Ms"`
	LatencyP95     *float64 `json:"latencyP95Ms"`
	LatencyP99     *float64 `json:"latencyP99Ms"`
	TCPConnections *float64 `json:"tcpConnections"`
	TLSRate        *float64 `json:"tlsRate"` // share of requests over mTLS, 0..1
}

// ParseWindow parses a stat window ("30s", "1m", "1h"): between 10s and 24h.
func ParseWindow(s string) (time.Duration, error) {
	if s == "" {
		return DefaultWindow, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, badRequest("window %q: %v (e.g. 30s, 1m, 1h)", s, err)
	}
	if d < 10*time.Second || d > 24*time.Hour {
		return 0, badRequest("window %s is out of range: between 10s and 24h (the proxies are scraped every 10s)", d)
	}
	return d, nil
}

func promDuration(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) + "s" }

// selector is a set of PromQL label matchers, rendered sorted. A key is a
// label name, matched for equality with its value; a key "<label>=~" matches
// the label with the value as a regular expression. Only the code chooses
// the operator: a value (a name from a request) is always a string literal.
type selector map[string]string

// reMatch is the suffix of a selector key whose value is a regular expression.
const reMatch = "=~"

func (s selector) String() string {
	parts := make([]string, 0, len(s))
	for k, v := range s {
		op := "="
		if label, ok := strings.CutSuffix(k, reMatch); ok {
			k, op = label, reMatch
		}
		parts = append(parts, k+op+strconv.Quote(v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// statQueries are the three PromQL queries of a stat, grouped by `by`.
type statQueries struct{ requests, latency, tcp string }

func buildStatQueries(sel selector, by []string, window time.Duration) statQueries {
	w := promDuration(window)
	b := strings.Join(by, ", ")
	return statQueries{
		requests: fmt.Sprintf("sum by (%s, classification, tls) (rate(response_total{%s}[%s]))", b, sel, w),
		latency:  fmt.Sprintf("sum by (%s, le) (rate(response_latency_ms_bucket{%s}[%s]))", b, sel, w),
		tcp:      fmt.Sprintf("sum by (%s) (tcp_open_connections{%s})", b, withLabel(sel, "peer", tcpPeer(sel))),
	}
}

// tcpPeer is the side of the proxy whose connections a stat counts. The TCP
// series are counted on both sides, the accepted connection (peer="src") and
// the proxy's own (peer="dst"): inbound, the clients' connections, not the
// proxy's to the application; outbound, the connections to the destinations,
// which carry their dst_* labels.
func tcpPeer(sel selector) string {
	if sel["direction"] == "outbound" {
		return "dst"
	}
	return "src"
}

// withLabel is sel and label=value.
func withLabel(sel selector, label, value string) selector {
	out := make(selector, len(sel)+1)
	for k, v := range sel {
		out[k] = v
	}
	out[label] = value
	return out
}

// plan is how a stat request maps onto the proxies' metrics: which series,
// grouped how, and which row each group belongs to.
type plan struct {
	sel   selector
	by    []string
	rowOf func(labels map[string]string) []key
}

func (e *Engine) plan(req StatRequest, objs []*object) (plan, error) {
	r := req.Resource
	nsFilter := func(sel selector, label string) {
		if !req.AllNamespaces && r.Kind != KindNamespace {
			sel[label] = r.Namespace
		}
	}
	switch {
	case req.From != nil:
		// Outbound traffic of the source, grouped by its destinations.
		f := req.From
		if f.Name == "" || f.Kind == KindService {
			return plan{}, badRequest("--from must name a workload, pod or namespace (e.g. deploy/web), not %s", f)
		}
		sel := selector{"direction": "outbound"}
		if f.Kind != KindNamespace {
			sel["namespace"] = f.Namespace
			sel[promLabel(f.Kind)] = f.Name
		} else {
			sel["namespace"] = f.Name
		}
		nsFilter(sel, "dst_namespace")
		if r.Kind == KindNamespace {
			if r.Name != "" {
				sel["dst_namespace"] = r.Name
			}
			return plan{sel, []string{"dst_namespace"}, func(l map[string]string) []key { return []key{{"", l["dst_namespace"]}} }}, nil
		}
		if r.Name != "" {
			sel[dstLabel(r.Kind)] = r.Name
		}
		d := dstLabel(r.Kind)
		return plan{sel, []string{"dst_namespace", d}, func(l map[string]string) []key { return []key{{l["dst_namespace"], l[d]}} }}, nil
	}
	sel := selector{"direction": "inbound"}
	if req.To != nil {
		t := req.To
		if t.Name == "" {
			return plan{}, badRequest("--to must name a resource (e.g. svc/web), not %s", t)
		}
		sel["direction"] = "outbound"
		if t.Kind == KindNamespace {
			sel["dst_namespace"] = t.Name
		} else {
			sel["dst_namespace"] = t.Namespace
			sel[dstLabel(t.Kind)] = t.Name
		}
	}
	nsFilter(sel, "namespace")
	switch r.Kind {
	case KindNamespace:
		if r.Name != "" {
			sel["namespace"] = r.Name
		}
		return plan{sel, []string{"namespace"}, func(l map[string]string) []key { return []key{{"", l["namespace"]}} }}, nil
	case KindService:
		// Services have no label of their own: their traffic is their pods'.
		svcsOf := map[key][]key{}
		var names []string
		for _, o := range objs {
			for _, p := range o.pods {
				pk := key{p.Namespace, p.Name}
				if len(svcsOf[pk]) == 0 {
					names = append(names, regexp.QuoteMeta(p.Name))
				}
				svcsOf[pk] = append(svcsOf[pk], o.key)
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			return plan{}, nil
		}
		sel["pod"+reMatch] = strings.Join(names, "|")
		return plan{sel, []string{"namespace", "pod"}, func(l map[string]string) []key { return svcsOf[key{l["namespace"], l["pod"]}] }}, nil
	}
	lbl := promLabel(r.Kind)
	if r.Name != "" {
		sel[lbl] = r.Name
	}
	return plan{sel, []string{"namespace", lbl}, func(l map[string]string) []key { return []key{{l["namespace"], l[lbl]}} }}, nil
}

type acc struct {
	total, success, tls, tcp float64
	hasTCP                   bool
	buckets                  map[float64]float64
}

// Stat computes the golden metrics of req.
func (e *Engine) Stat(ctx context.Context, req StatRequest) ([]StatRow, error) {
	window, err := ParseWindow(req.Window)
	if err != nil {
		return nil, err
	}
	if req.Resource.Kind == "" {
		return nil, badRequest("stat needs a resource type")
	}
	if !req.AllNamespaces && req.Resource.Kind != KindNamespace && req.Resource.Namespace == "" {
		return nil, badRequest("stat of %s needs a namespace or all namespaces", req.Resource)
	}
	if req.From != nil && req.To != nil {
		return nil, badRequest("--from and --to cannot be combined")
	}
	objs, err := objects(ctx, e.Kube, req.Resource, req.AllNamespaces)
	if err != nil {
		return nil, err
	}
	p, err := e.plan(req, objs)
	if err != nil {
		return nil, err
	}
	accs := map[key]*acc{}
	get := func(k key) *acc {
		a := accs[k]
		if a == nil {
			a = &acc{buckets: map[float64]float64{}}
			accs[k] = a
		}
		return a
	}
	if p.rowOf != nil {
		q := buildStatQueries(p.sel, p.by, window)
		reqs, err := e.Prom.Query(ctx, q.requests)
		if err != nil {
			return nil, err
		}
		lat, err := e.Prom.Query(ctx, q.latency)
		if err != nil {
			return nil, err
		}
		tcp, err := e.Prom.Query(ctx, q.tcp)
		if err != nil {
			return nil, err
		}
		for _, s := range reqs {
			for _, k := range p.rowOf(s.Labels) {
				a := get(k)
				a.total += s.Value
				if s.Labels["classification"] == "success" {
					a.success += s.Value
				}
				if s.Labels["tls"] == "true" {
					a.tls += s.Value
				}
			}
		}
		for _, s := range lat {
			le, ok := parseLe(s.Labels["le"])
			if !ok {
				continue
			}
			for _, k := range p.rowOf(s.Labels) {
				get(k).buckets[le] += s.Value
			}
		}
		for _, s := range tcp {
			for _, k := range p.rowOf(s.Labels) {
				a := get(k)
				a.tcp += s.Value
				a.hasTCP = true
			}
		}
	}
	rows := make([]StatRow, 0, len(objs))
	for _, o := range objs {
		row := StatRow{Namespace: o.ns, Kind: req.Resource.Kind, Name: o.name, TotalPods: len(o.pods)}
		for _, pod := range o.pods {
			if Meshed(pod) {
				row.MeshedPods++
			}
		}
		if a := accs[o.key]; a != nil {
			if a.total > 0 {
				row.RPS = ptr(a.total)
				row.SuccessRate = ptr(a.success / a.total)
				row.TLSRate = ptr(a.tls / a.total)
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
			if a.hasTCP {
				row.TCPConnections = ptr(a.tcp)
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func ptr(v float64) *float64 { return &v }
