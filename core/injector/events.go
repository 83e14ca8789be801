package injector

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KubeEvents records Warning Events with the API server, asynchronously so
// that admission latency does not depend on it. The event is about the
// pod's controller (its first owner reference, e.g. the ReplicaSet) when it
// has one, since the pod has no name or UID yet when it comes from a
// generateName; otherwise about the pod itself.
type KubeEvents struct {
	Client    kubernetes.Interface
	Log       *slog.Logger
	Component string // reportingController, e.g. "conduit-injector"
}

// Warn implements EventSink.
func (k *KubeEvents) Warn(_ context.Context, pod *corev1.Pod, namespace, reason, message string) {
	ev := NewEvent(pod, namespace, reason, message, k.Component, time.Now())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := k.Client.CoreV1().Events(namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			k.Log.Warn("cannot record event", "namespace", namespace, "err", err)
		}
	}()
}

// NewEvent builds the Warning Event about pod.
func NewEvent(pod *corev1.Pod, namespace, reason, message, component string, now time.Time) *corev1.Event {
	ref := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: namespace, Name: pod.Name, UID: pod.UID}
	if len(pod.OwnerReferences) > 0 {
		o := pod.OwnerReferences[0]
		ref = corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: namespace, Name: o.Name, UID: o.UID}
	} else if pod.Name == "" {
		ref.Name = pod.GenerateName
	}
	t := metav1.NewTime(now)
	return &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: fmt.Sprintf("%s.", nonEmpty(ref.Name, "pod")), Namespace: namespace},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             message,
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: component},
		ReportingController: "conduit.dev/" + component,
		ReportingInstance:   component,
		FirstTimestamp:      t,
		LastTimestamp:       t,
		Count:               1,
	}
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
