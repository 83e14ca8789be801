package metrics

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// ProxyContainerName is the name of the proxy container (or native sidecar
// init container) the injector adds to meshed pods.
const ProxyContainerName = "conduit-proxy"

// Meshed reports whether pod runs a Conduit proxy.
func Meshed(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == ProxyContainerName {
			return true
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == ProxyContainerName {
			return true
		}
	}
	return false
}

type key struct{ ns, name string }

// object is one resource a row is reported for, with its live pods.
type object struct {
	key
	selector labels.Selector // services only
	pods     []*corev1.Pod
}

// workloadOf names the workload of kind that owns pod ("" if none), the way
// Prometheus' relabelling names it from the pod's controller.
func workloadOf(pod *corev1.Pod, kind string) string {
	switch kind {
	case KindPod:
		return pod.Name
	case KindNamespace:
		return pod.Namespace
	}
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch {
		case kind == KindDeployment && o.Kind == "ReplicaSet":
			if h := pod.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(o.Name, "-"+h) {
				return strings.TrimSuffix(o.Name, "-"+h)
			}
		case kind == KindStatefulSet && o.Kind == "StatefulSet",
			kind == KindDaemonSet && o.Kind == "DaemonSet",
			kind == KindJob && o.Kind == "Job":
			return o.Name
		}
	}
	return ""
}

func live(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.DeletionTimestamp == nil
}

// objects lists the objects of r (every namespace when all) with their pods.
func objects(ctx context.Context, kc kubernetes.Interface, r Resource, all bool) ([]*object, error) {
	ns := r.Namespace
	if all {
		ns = ""
	}
	var keys []key
	selectors := map[key]labels.Selector{}
	list := metav1.ListOptions{}
	add := func(m metav1.ObjectMeta) { keys = append(keys, key{m.Namespace, m.Name}) }
	var err error
	switch r.Kind {
	case KindNamespace:
		var l *corev1.NamespaceList
		if l, err = kc.CoreV1().Namespaces().List(ctx, list); err == nil {
			for _, o := range l.Items {
				keys = append(keys, key{"", o.Name})
			}
		}
	case KindPod:
		var l *corev1.PodList
		if l, err = kc.CoreV1().Pods(ns).List(ctx, list); err == nil {
			for _, o := range l.Items {
				if live(&o) {
					add(o.ObjectMeta)
				}
			}
		}
	case KindDeployment:
		l, e := kc.AppsV1().Deployments(ns).List(ctx, list)
		if err = e; err == nil {
			for _, o := range l.Items {
				add(o.ObjectMeta)
			}
		}
	case KindStatefulSet:
		l, e := kc.AppsV1().StatefulSets(ns).List(ctx, list)
		if err = e; err == nil {
			for _, o := range l.Items {
				add(o.ObjectMeta)
			}
		}
	case KindDaemonSet:
		l, e := kc.AppsV1().DaemonSets(ns).List(ctx, list)
		if err = e; err == nil {
			for _, o := range l.Items {
				add(o.ObjectMeta)
			}
		}
	case KindJob:
		l, e := kc.BatchV1().Jobs(ns).List(ctx, list)
		if err = e; err == nil {
			for _, o := range l.Items {
				add(o.ObjectMeta)
			}
		}
	case KindService:
		l, e := kc.CoreV1().Services(ns).List(ctx, list)
		if err = e; err == nil {
			for _, o := range l.Items {
				add(o.ObjectMeta)
				if len(o.Spec.Selector) > 0 {
					selectors[key{o.Namespace, o.Name}] = labels.SelectorFromSet(o.Spec.Selector)
				}
			}
		}
	default:
		return nil, fmt.Errorf("metrics: unknown kind %q", r.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: listing %ss: %w", r.Kind, err)
	}
	if r.Name != "" {
		keys = slices.DeleteFunc(keys, func(k key) bool { return k.name != r.Name })
	}
	if r.Name != "" && len(keys) == 0 {
		where := ""
		if r.Kind != KindNamespace {
			where = " in namespace " + ns
		}
		return nil, fmt.Errorf("metrics: %s %q not found%s: %w", r.Kind, r.Name, where, apierrors.NewNotFound(corev1.Resource(r.Kind), r.Name))
	}
	podNS := ns
	if r.Kind == KindNamespace && r.Name != "" {
		podNS = r.Name
	}
	pods, err := kc.CoreV1().Pods(podNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("metrics: listing pods: %w", err)
	}
	byKey := map[key]*object{}
	out := make([]*object, 0, len(keys))
	for _, k := range keys {
		o := &object{key: k, selector: selectors[k]}
		byKey[k] = o
		out = append(out, o)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if !live(p) {
			continue
		}
		if r.Kind == KindService {
			for _, o := range out {
				if o.ns == p.Namespace && o.selector != nil && o.selector.Matches(labels.Set(p.Labels)) {
					o.pods = append(o.pods, p)
				}
			}
			continue
		}
		k := key{p.Namespace, workloadOf(p, r.Kind)}
		if r.Kind == KindNamespace {
			k = key{"", p.Namespace}
		}
		if o := byKey[k]; o != nil && k.name != "" {
			o.pods = append(o.pods, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ns != out[j].ns {
			return out[i].ns < out[j].ns
		}
		return out[i].name < out[j].name
	})
	return out, nil
}

// PodsOf returns the live pods of the object r names (a workload, a
// service's selected pods, a pod, or every pod of a namespace).
func PodsOf(ctx context.Context, kc kubernetes.Interface, r Resource) ([]*corev1.Pod, error) {
	if r.Name == "" {
		return nil, badRequest("name one %s (e.g. %s/web)", r.Kind, r.Kind)
	}
	objs, err := objects(ctx, kc, r, false)
	if err != nil {
		return nil, err
	}
	var pods []*corev1.Pod
	for _, o := range objs {
		pods = append(pods, o.pods...)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}
