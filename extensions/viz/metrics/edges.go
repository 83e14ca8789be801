package metrics

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EdgesRequest asks for the connections from and to Resource's objects.
type EdgesRequest struct {
	Resource      Resource `json:"resource"`
	AllNamespaces bool     `json:"allNamespaces,omitempty"`
	Window        string   `json:"window,omitempty"`
}

// Edge is traffic from one workload to another, with the identities the two
// proxies authenticated each other as (empty when the traffic is not mTLS).
type Edge struct {
	Src      Resource `json:"src"`
	Dst      Resource `json:"dst"`
	ClientID string   `json:"clientId"`
	ServerID string   `json:"serverId"`
	Secured  bool     `json:"secured"` // every request of the edge was over mTLS
	RPS      float64  `json:"rps"`
}

// Identity is the mesh identity of a service account.
func (e *Engine) Identity(sa, ns string) string {
	cp, td := e.ControlPlaneNamespace, e.TrustDomain
	if cp == "" {
		cp = "conduit"
	}
	if td == "" {
		td = "cluster.local"
	}
	return fmt.Sprintf("%s.%s.serviceaccount.identity.%s.%s", sa, ns, cp, td)
}

// Edges lists the edges of req.Resource: the outbound traffic of its objects
// and the traffic to them, with the server identity the client's proxy
// verified and the client identity the server's proxy saw.
func (e *Engine) Edges(ctx context.Context, req EdgesRequest) ([]Edge, error) {
	window, err := ParseWindow(req.Window)
	if err != nil {
		return nil, err
	}
	r := req.Resource
	switch r.Kind {
	case KindDeployment, KindStatefulSet, KindDaemonSet, KindJob, KindPod:
	default:
		return nil, badRequest("edges are reported between workloads (deploy, sts, ds, job, pod), not %ss", r.Kind)
	}
	if !req.AllNamespaces && r.Namespace == "" {
		return nil, badRequest("edges of %s need a namespace or all namespaces", r)
	}
	lbl, dst := promLabel(r.Kind), dstLabel(r.Kind)
	w := promDuration(window)
	by := fmt.Sprintf("namespace, %s, dst_namespace, %s, server_id, tls", lbl, dst)
	var sels []selector
	if req.AllNamespaces {
		s := selector{"direction": "outbound"}
		if r.Name != "" {
			s[lbl] = r.Name
		}
		sels = append(sels, s)
		if r.Name != "" {
			sels = append(sels, selector{"direction": "outbound", dst: r.Name})
		}
	} else {
		src := selector{"direction": "outbound", "namespace": r.Namespace}
		to := selector{"direction": "outbound", "dst_namespace": r.Namespace}
		if r.Name != "" {
			src[lbl], to[dst] = r.Name, r.Name
		}
		sels = append(sels, src, to)
	}
	type ek struct{ src, dst key }
	type agg struct {
		rps, tls float64
		servers  map[string]bool
	}
	edges := map[ek]*agg{}
	seen := map[string]bool{} // a series can match both selectors
	for _, sel := range sels {
		samples, err := e.Prom.Query(ctx, fmt.Sprintf("sum by (%s) (rate(response_total{%s}[%s]))", by, sel, w))
		if err != nil {
			return nil, err
		}
		for _, s := range samples {
			k := ek{key{s.Labels["namespace"], s.Labels[lbl]}, key{s.Labels["dst_namespace"], s.Labels[dst]}}
			id := fmt.Sprint(k, s.Labels["server_id"], s.Labels["tls"])
			if k.src.name == "" || k.dst.name == "" || seen[id] {
				continue
			}
			seen[id] = true
			a := edges[k]
			if a == nil {
				a = &agg{servers: map[string]bool{}}
				edges[k] = a
			}
			a.rps += s.Value
			if s.Labels["tls"] == "true" {
				a.tls += s.Value
			}
			if id := s.Labels["server_id"]; id != "" {
				a.servers[id] = true
			}
		}
	}
	if len(edges) == 0 {
		return []Edge{}, nil
	}
	// The client identities the destinations' proxies saw.
	var dstNS []string
	srcNS := map[string]bool{}
	for k := range edges {
		dstNS = append(dstNS, k.dst.ns)
		srcNS[k.src.ns] = true
	}
	slices.Sort(dstNS)
	dstNS = slices.Compact(dstNS)
	for i, ns := range dstNS {
		dstNS[i] = regexp.QuoteMeta(ns)
	}
	in, err := e.Prom.Query(ctx, fmt.Sprintf("sum by (namespace, %s, client_id) (rate(response_total{%s}[%s]))", lbl,
		selector{"direction": "inbound", "tls": "true", "namespace" + reMatch: strings.Join(dstNS, "|")}, w))
	if err != nil {
		return nil, err
	}
	clients := map[key][]string{}
	for _, s := range in {
		k := key{s.Labels["namespace"], s.Labels[lbl]}
		if id := s.Labels["client_id"]; id != "" {
			clients[k] = append(clients[k], id)
		}
	}
	// The service account, hence the expected identity, of each source.
	sas := map[key]string{}
	for ns := range srcNS {
		pods, err := e.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("metrics: listing pods in %s: %w", ns, err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if name := workloadOf(p, r.Kind); name != "" {
				sa := p.Spec.ServiceAccountName
				if sa == "" {
					sa = "default"
				}
				sas[key{ns, name}] = sa
			}
		}
	}
	out := make([]Edge, 0, len(edges))
	for k, a := range edges {
		ed := Edge{
			Src: Resource{Kind: r.Kind, Namespace: k.src.ns, Name: k.src.name},
			Dst: Resource{Kind: r.Kind, Namespace: k.dst.ns, Name: k.dst.name},
			RPS: a.rps, Secured: a.rps > 0 && a.tls >= a.rps*0.999,
		}
		servers := make([]string, 0, len(a.servers))
		for id := range a.servers {
			servers = append(servers, id)
		}
		sort.Strings(servers)
		ed.ServerID = strings.Join(servers, ",")
		if sa, ok := sas[k.src]; ok && slices.Contains(clients[k.dst], e.Identity(sa, k.src.ns)) {
			ed.ClientID = e.Identity(sa, k.src.ns)
		}
		out = append(out, ed)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Src != b.Src {
			return a.Src.Namespace+"/"+a.Src.Name < b.Src.Namespace+"/"+b.Src.Name
		}
		return a.Dst.Namespace+"/"+a.Dst.Name < b.Dst.Namespace+"/"+b.Dst.Name
	})
	return out, nil
}
