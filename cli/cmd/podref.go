package cmd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// podRefHelp is how the commands that talk to proxies describe their
// argument.
const podRefHelp = `POD is a pod name (or pod/NAME) in -n's namespace, or a workload
(deploy/NAME, sts/NAME, ds/NAME, rs/NAME or job/NAME): each of its running pods.`

// podRef is the argument of a command that talks to proxies, resolved to
// pods.
type podRef struct {
	ns       string
	arg      string   // as given, e.g. deploy/web
	pods     []string // sorted
	workload bool     // arg named a workload, not one pod
}

// podRefTypes maps the resource types a proxy command takes, besides
// pods, to their kind, as kubectl spells them.
var podRefTypes = map[string]string{
	"deploy": "deployment", "deployment": "deployment", "deployments": "deployment",
	"sts": "statefulset", "statefulset": "statefulset", "statefulsets": "statefulset",
	"ds": "daemonset", "daemonset": "daemonset", "daemonsets": "daemonset",
	"rs": "replicaset", "replicaset": "replicaset", "replicasets": "replicaset",
	"job": "job", "jobs": "job",
}

// resolvePods resolves arg in ns: a pod's name, pod/NAME, or TYPE/NAME of a
// workload, whose running pods (not being deleted) it lists, by name. A
// pod's name is taken as given, without a request.
func resolvePods(ctx context.Context, cs kubernetes.Interface, ns, arg string) (podRef, error) {
	typ, name, ok := strings.Cut(arg, "/")
	if !ok {
		typ, name = "pod", arg
	}
	if name == "" || strings.Contains(name, "/") {
		return podRef{}, fmt.Errorf("%q is not a pod or TYPE/NAME (e.g. web-5d8c7b9f4-x2kq7, deploy/web)", arg)
	}
	switch typ {
	case "pod", "pods", "po":
		return podRef{ns: ns, arg: arg, pods: []string{name}}, nil
	}
	kind, ok := podRefTypes[strings.ToLower(typ)]
	if !ok {
		return podRef{}, fmt.Errorf("%q: unknown resource type %q (accepted: pod, deploy, sts, ds, rs, job)", arg, typ)
	}
	sel, err := workloadSelector(ctx, cs, ns, kind, name)
	if apierrors.IsNotFound(err) {
		return podRef{}, fmt.Errorf("%s %s not found in namespace %s", kind, name, ns)
	}
	if err != nil {
		return podRef{}, fmt.Errorf("read %s %s/%s: %w", kind, ns, name, err)
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || selector.Empty() {
		return podRef{}, fmt.Errorf("%s %s/%s has no usable pod selector (%v)", kind, ns, name, err)
	}
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return podRef{}, fmt.Errorf("list the pods of %s %s/%s: %w", kind, ns, name, err)
	}
	ref := podRef{ns: ns, arg: arg, workload: true}
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			ref.pods = append(ref.pods, p.Name)
		}
	}
	if len(ref.pods) == 0 {
		return podRef{}, fmt.Errorf("%s %s/%s has no running pod ('kubectl -n %s get pods -l %s')", kind, ns, name, ns, selector)
	}
	slices.Sort(ref.pods)
	return ref, nil
}

// workloadSelector reads the pod selector of the workload kind/name.
func workloadSelector(ctx context.Context, cs kubernetes.Interface, ns, kind, name string) (*metav1.LabelSelector, error) {
	get := metav1.GetOptions{}
	switch kind {
	case "deployment":
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		return d.Spec.Selector, nil
	case "statefulset":
		s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		return s.Spec.Selector, nil
	case "daemonset":
		d, err := cs.AppsV1().DaemonSets(ns).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		return d.Spec.Selector, nil
	case "replicaset":
		r, err := cs.AppsV1().ReplicaSets(ns).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		return r.Spec.Selector, nil
	case "job":
		j, err := cs.BatchV1().Jobs(ns).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		return j.Spec.Selector, nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

// proxyPods resolves a proxy command's POD argument in -n's namespace, or
// the kubeconfig's; prefix names the command in errors.
func (o *Options) proxyPods(ctx context.Context, prefix, arg string) (*Kube, podRef, error) {
	k, err := o.Kube()
	if err != nil {
		return nil, podRef{}, fmt.Errorf("%s: %w", prefix, err)
	}
	ns := k.Namespace
	if o.Namespace != "" {
		ns = o.Namespace
	}
	ref, err := resolvePods(ctx, k.Client, ns, arg)
	if err != nil {
		return nil, podRef{}, fmt.Errorf("%s: %w", prefix, err)
	}
	return k, ref, nil
}

// each runs fn on every pod of r, in order, and joins the errors of the
// pods it failed on: the others' output stands.
func (r podRef) each(fn func(i int, pod string) error) error {
	var errs []error
	for i, pod := range r.pods {
		if err := fn(i, pod); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	if len(r.pods) > 1 {
		errs = append([]error{fmt.Errorf("%d of the %d pods of %s failed", len(errs), len(r.pods), r.arg)}, errs...)
	}
	return errors.Join(errs...)
}
