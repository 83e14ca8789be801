package metrics

import (
	"strings"
)

// Kinds the viz extension reports on, by canonical name.
const (
	KindNamespace   = "namespace"
	KindPod         = "pod"
	KindDeployment  = "deployment"
	KindStatefulSet = "statefulset"
	KindDaemonSet   = "daemonset"
	KindJob         = "job"
	KindService     = "service"
)

var kindAliases = map[string]string{
	"ns": KindNamespace, "namespace": KindNamespace, "namespaces": KindNamespace,
	"po": KindPod, "pod": KindPod, "pods": KindPod,
	"deploy": KindDeployment, "deployment": KindDeployment, "deployments": KindDeployment,
	"sts": KindStatefulSet, "statefulset": KindStatefulSet, "statefulsets": KindStatefulSet,
	"ds": KindDaemonSet, "daemonset": KindDaemonSet, "daemonsets": KindDaemonSet,
	"job": KindJob, "jobs": KindJob,
	"svc": KindService, "service": KindService, "services": KindService,
}

// ParseKind maps kubectl-style names (deploy, po, ns, svc, sts, ds, job) to a kind.
func ParseKind(s string) (string, error) {
	if k, ok := kindAliases[strings.ToLower(s)]; ok {
		return k, nil
	}
	return "", badRequest("unknown resource type %q (accepted: deploy, pod, ns, svc, sts, ds, job)", s)
}

// Resource names a Kubernetes object, or every object of a kind when Name is empty.
type Resource struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
}

func (r Resource) String() string {
	if r.Name == "" {
		return r.Kind
	}
	return r.Kind + "/" + r.Name
}

// ParseResource parses "kind", "kind/name" or, with a second argument, "kind name".
func ParseResource(args []string, namespace string) (Resource, error) {
	if len(args) == 0 || len(args) > 2 {
		return Resource{}, badRequest("want a resource: TYPE, TYPE/NAME or TYPE NAME (e.g. deploy/web)")
	}
	kind, name, slash := strings.Cut(args[0], "/")
	if slash && name == "" {
		return Resource{}, badRequest("resource %q has an empty name", args[0])
	}
	if len(args) == 2 {
		if slash {
			return Resource{}, badRequest("give the name either as TYPE/NAME or as a second argument, not both")
		}
		name = args[1]
	}
	k, err := ParseKind(kind)
	if err != nil {
		return Resource{}, err
	}
	r := Resource{Kind: k, Name: name, Namespace: namespace}
	if k == KindNamespace {
		r.Namespace = ""
	}
	return r, nil
}

// promLabel is the label Prometheus' relabelling puts on a proxy's metrics
// to name the workload that runs it (see the chart's scrape config).
func promLabel(kind string) string {
	switch kind {
	case KindJob:
		return "k8s_job"
	case KindService:
		return "" // services are resolved to their pods
	}
	return kind
}

// DestinationLabel is the destination service's metric label naming a
// destination of kind (core/destination's podLabels: "deployment", "pod",
// "service", ...), which the proxy puts on outbound metrics prefixed dst_ and
// tap matches unprefixed. A Job's is k8s_job, as in Prometheus' relabelling
// (promLabel): "job" is Prometheus' own label.
func DestinationLabel(kind string) string {
	if kind == KindJob {
		return "k8s_job"
	}
	return kind
}

// dstLabel is the label the proxy puts on outbound metrics to name the
// destination.
func dstLabel(kind string) string {
	return "dst_" + DestinationLabel(kind)
}
