package cmd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// restartedAtAnnotation is set on a workload's pod template to restart it,
// as `kubectl rollout restart` does with its own annotation.
const restartedAtAnnotation = "conduit.dev/restarted-at"

// workloadRef names a workload whose pods can be restarted by a rollout.
type workloadRef struct {
	Kind, Namespace, Name string
}

func (w workloadRef) String() string {
	return strings.ToLower(w.Kind) + "/" + w.Name + " in " + w.Namespace
}

// ownerWorkload returns the Deployment (through its ReplicaSet), StatefulSet
// or DaemonSet that owns pod; ok is false for a pod no such workload owns.
func ownerWorkload(ctx context.Context, k *Kube, pod *corev1.Pod) (w workloadRef, ok bool, err error) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return w, false, nil
	}
	switch ref.Kind {
	case "StatefulSet", "DaemonSet":
		return workloadRef{ref.Kind, pod.Namespace, ref.Name}, true, nil
	case "ReplicaSet":
		rs, err := k.Client.AppsV1().ReplicaSets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return w, false, nil
		}
		if err != nil {
			return w, false, fmt.Errorf("get replicaset %s/%s: %w", pod.Namespace, ref.Name, err)
		}
		if d := metav1.GetControllerOf(rs); d != nil && d.Kind == "Deployment" {
			return workloadRef{"Deployment", pod.Namespace, d.Name}, true, nil
		}
	}
	return w, false, nil
}

// restartWorkload starts a rolling restart of w.
func restartWorkload(ctx context.Context, k *Kube, w workloadRef, at time.Time) error {
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, restartedAtAnnotation, at.UTC().Format(time.RFC3339))
	var err error
	apps := k.Client.AppsV1()
	switch w.Kind {
	case "Deployment":
		_, err = apps.Deployments(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	case "StatefulSet":
		_, err = apps.StatefulSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	case "DaemonSet":
		_, err = apps.DaemonSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	default:
		return fmt.Errorf("cannot restart a %s", w.Kind)
	}
	if err != nil {
		return fmt.Errorf("restart %s: %w", w, err)
	}
	return nil
}

// rolloutDone reports whether w's latest rollout has completed, and if not what it waits for.
func rolloutDone(ctx context.Context, k *Kube, w workloadRef) (bool, string, error) {
	apps := k.Client.AppsV1()
	switch w.Kind {
	case "Deployment":
		d, err := apps.Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return deploymentDone(d)
	case "StatefulSet":
		s, err := apps.StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		want := int32(1)
		if s.Spec.Replicas != nil {
			want = *s.Spec.Replicas
		}
		st := s.Status
		switch {
		case st.ObservedGeneration < s.Generation:
			return false, "waiting for the controller to see the restart", nil
		case s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType:
			return false, "its update strategy is OnDelete: delete its pods one by one", nil
		case st.UpdatedReplicas < want || st.CurrentRevision != st.UpdateRevision:
			return false, fmt.Sprintf("%d of %d pods updated", st.UpdatedReplicas, want), nil
		case st.ReadyReplicas < want:
			return false, fmt.Sprintf("%d of %d pods ready", st.ReadyReplicas, want), nil
		}
		return true, "", nil
	case "DaemonSet":
		d, err := apps.DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		st := d.Status
		switch {
		case st.ObservedGeneration < d.Generation:
			return false, "waiting for the controller to see the restart", nil
		case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
			return false, fmt.Sprintf("%d of %d pods updated", st.UpdatedNumberScheduled, st.DesiredNumberScheduled), nil
		case st.NumberAvailable < st.DesiredNumberScheduled:
			return false, fmt.Sprintf("%d of %d pods available", st.NumberAvailable, st.DesiredNumberScheduled), nil
		}
		return true, "", nil
	}
	return false, "", fmt.Errorf("cannot follow the rollout of a %s", w.Kind)
}

func deploymentDone(d *appsv1.Deployment) (bool, string, error) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "", fmt.Errorf("deployment %s/%s exceeded its progress deadline: %s", d.Namespace, d.Name, c.Message)
		}
	}
	switch {
	case st.ObservedGeneration < d.Generation:
		return false, "waiting for the controller to see the restart", nil
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d pods updated", st.UpdatedReplicas, want), nil
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old pods terminating", st.Replicas-st.UpdatedReplicas), nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return false, fmt.Sprintf("%d of %d pods available", st.AvailableReplicas, st.UpdatedReplicas), nil
	}
	return true, "", nil
}

// waitRollouts polls until every workload's rollout has completed or timeout passes.
func waitRollouts(ctx context.Context, k *Kube, ws []workloadRef, poll, timeout time.Duration, progress func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pending := slices.Clone(ws)
	for {
		var still []workloadRef
		var why []string
		for _, w := range pending {
			done, msg, err := rolloutDone(ctx, k, w)
			if err != nil {
				return fmt.Errorf("rollout of %s: %w", w, err)
			}
			if done {
				progress(fmt.Sprintf("rollout of %s complete", w))
				continue
			}
			still = append(still, w)
			why = append(why, fmt.Sprintf("%s: %s", w, msg))
		}
		if len(still) == 0 {
			return nil
		}
		pending = still
		select {
		case <-ctx.Done():
			return fmt.Errorf("rollouts not complete after %s: %s", timeout, strings.Join(why, "; "))
		case <-time.After(poll):
		}
	}
}

// workloadPods returns the pods of the workloads ws for which keep holds,
// as namespace/name, sorted.
func workloadPods(ctx context.Context, k *Kube, ws []workloadRef, keep func(*corev1.Pod) bool) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, w := range ws {
		if seen[w.Namespace] {
			continue
		}
		seen[w.Namespace] = true
		l, err := k.Client.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list pods in %s: %w", w.Namespace, err)
		}
		for i := range l.Items {
			p := &l.Items[i]
			if !keep(p) {
				continue
			}
			owner, ok, err := ownerWorkload(ctx, k, p)
			if err != nil {
				return nil, err
			}
			if ok && slices.Contains(ws, owner) {
				out = append(out, p.Namespace+"/"+p.Name)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// terminating holds for a pod being deleted.
func terminating(p *corev1.Pod) bool { return p.DeletionTimestamp != nil }

// waitTerminated polls until no pod of the workloads ws is terminating or
// timeout passes. A rollout is complete while its old pods still run out
// their termination: the injector's, for one, keeps answering the API
// server on its open connections for its shutdown delay.
func waitTerminated(ctx context.Context, k *Kube, ws []workloadRef, poll, timeout time.Duration, progress func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	told := false
	for {
		left, err := workloadPods(ctx, k, ws, terminating)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		if !told {
			progress(fmt.Sprintf("waiting for the old pods to exit: %s", strings.Join(left, ", ")))
			told = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("old pods still terminating after %s: %s (a finalizer or a long terminationGracePeriodSeconds holds them: kubectl describe pod)", timeout, strings.Join(left, ", "))
		case <-time.After(poll):
		}
	}
}
