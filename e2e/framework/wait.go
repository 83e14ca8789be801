package framework

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// poll calls cond every 250 ms until it returns true, returns an error other than a transient
// one, or timeout passes. The last error or "not yet" state is reported on timeout.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("timed out after %s: %w", timeout, last)
			}
			return fmt.Errorf("timed out after %s", timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Poll is WaitFor that returns the error instead of failing the test, for a
// wait whose failure the test reports and goes on from.
func Poll(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	return poll(ctx, timeout, cond)
}

// WaitFor polls cond until it holds, failing the test with desc after timeout. Errors returned
// by cond are retried (the last one is reported).
func (f *Framework) WaitFor(t testing.TB, desc string, timeout time.Duration, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := poll(context.Background(), timeout, cond); err != nil {
		t.Fatalf("e2e: waiting for %s: %v", desc, err)
	}
}

// WaitRollout waits until a workload ("deployment/web", "statefulset/db", "daemonset/x") has
// rolled out: its controller has seen the latest spec and every replica is updated and available.
func (f *Framework) WaitRollout(t testing.TB, ns, workload string, timeout time.Duration) {
	t.Helper()
	kind, name, ok := strings.Cut(workload, "/")
	if !ok {
		t.Fatalf("e2e: WaitRollout(%q): want kind/name", workload)
	}
	apps := f.Client.AppsV1()
	var state string
	cond := func(ctx context.Context) (bool, error) {
		switch strings.ToLower(kind) {
		case "deployment", "deploy", "deployments":
			d, err := apps.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			st := d.Status
			state = fmt.Sprintf("generation %d/%d, %d updated, %d available, %d total of %d", st.ObservedGeneration, d.Generation, st.UpdatedReplicas, st.AvailableReplicas, st.Replicas, want)
			return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.AvailableReplicas == want && st.Replicas == want, nil
		case "statefulset", "sts", "statefulsets":
			s, err := apps.StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			want := int32(1)
			if s.Spec.Replicas != nil {
				want = *s.Spec.Replicas
			}
			st := s.Status
			state = fmt.Sprintf("generation %d/%d, %d updated, %d ready of %d", st.ObservedGeneration, s.Generation, st.UpdatedReplicas, st.ReadyReplicas, want)
			return st.ObservedGeneration >= s.Generation && st.UpdatedReplicas == want && st.ReadyReplicas == want, nil
		case "daemonset", "ds", "daemonsets":
			d, err := apps.DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			st := d.Status
			state = fmt.Sprintf("generation %d/%d, %d updated, %d available of %d", st.ObservedGeneration, d.Generation, st.UpdatedNumberScheduled, st.NumberAvailable, st.DesiredNumberScheduled)
			return st.ObservedGeneration >= d.Generation && st.UpdatedNumberScheduled == st.DesiredNumberScheduled && st.NumberAvailable == st.DesiredNumberScheduled, nil
		}
		return false, fmt.Errorf("unsupported kind %q", kind)
	}
	if err := poll(context.Background(), timeout, cond); err != nil {
		t.Fatalf("e2e: rollout of %s in %s: %v (%s)", workload, ns, err, state)
	}
}

// WaitPodsReady waits until at least min pods match selector in ns and all of them are Ready,
// and returns them.
func (f *Framework) WaitPodsReady(t testing.TB, ns, selector string, min int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	var state string
	err := poll(context.Background(), timeout, func(ctx context.Context) (bool, error) {
		list, err := f.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		pods = list.Items
		ready := 0
		var notReady []string
		for _, p := range pods {
			if p.DeletionTimestamp == nil && PodReady(&p) {
				ready++
			} else {
				notReady = append(notReady, p.Name+"("+string(p.Status.Phase)+")")
			}
		}
		state = fmt.Sprintf("%d/%d ready, waiting for %v", ready, len(pods), notReady)
		return len(pods) >= min && ready == len(pods), nil
	})
	if err != nil {
		t.Fatalf("e2e: pods %q in %s: %v (%s)", selector, ns, err, state)
	}
	return pods
}

// PodReady reports whether the pod's Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// DeploymentPods lists the pods of a Deployment (by its selector).
func (f *Framework) DeploymentPods(t testing.TB, ns, name string) []corev1.Pod {
	t.Helper()
	ctx := Context(t, 30*time.Second)
	d, err := f.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("e2e: deployment %s/%s: %v", ns, name, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		t.Fatalf("e2e: deployment %s/%s selector: %v", ns, name, err)
	}
	list, err := f.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		t.Fatalf("e2e: pods of %s/%s: %v", ns, name, err)
	}
	return list.Items
}

// WaitEndpoints waits until the EndpointSlices of a Service list n ready endpoints (counted over
// every slice: a dual-stack Service's pod counts once per family), then until kube-proxy sends
// each port of each family to exactly those: it programs a Service a moment after its endpoints
// change, and a client outside the mesh that connects in between is refused.
func (f *Framework) WaitEndpoints(t testing.TB, ns, service string, n int, timeout time.Duration) {
	t.Helper()
	var ready int
	var want map[discoveryv1.AddressType]map[string]map[string]bool // family -> port name -> ready endpoint IPs
	err := poll(context.Background(), timeout, func(ctx context.Context) (bool, error) {
		slices, err := f.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + service})
		if err != nil {
			return false, err
		}
		ready, want = 0, map[discoveryv1.AddressType]map[string]map[string]bool{}
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				ready++
				for _, p := range s.Ports {
					name := ""
					if p.Name != nil {
						name = *p.Name
					}
					if want[s.AddressType] == nil {
						want[s.AddressType] = map[string]map[string]bool{}
					}
					if want[s.AddressType][name] == nil {
						want[s.AddressType][name] = map[string]bool{}
					}
					for _, a := range e.Addresses {
						want[s.AddressType][name][a] = true
					}
				}
			}
		}
		return ready == n, nil
	})
	if err != nil {
		t.Fatalf("e2e: endpoints of service %s/%s: %v (%d ready, want %d)", ns, service, err, ready, n)
	}
	f.waitKubeProxy(t, ns, service, want, timeout)
}
