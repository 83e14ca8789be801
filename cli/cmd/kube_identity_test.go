package cmd

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestRolloutDone(t *testing.T) {
	two := int32(2)
	meta := metav1.ObjectMeta{Name: "w", Namespace: "ns", Generation: 3}
	tests := []struct {
		name    string
		obj     runtime.Object
		kind    string
		done    bool
		msg     string
		wantErr string
	}{
		{"deployment done", &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}}, "Deployment", true, "", ""},
		{"deployment not observed", &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}}, "Deployment", false, "waiting for the controller", ""},
		{"deployment updating", &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 3, UpdatedReplicas: 1, AvailableReplicas: 2}}, "Deployment", false, "1 of 2 pods updated", ""},
		{"deployment old pods left", &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 3, UpdatedReplicas: 2, AvailableReplicas: 2}}, "Deployment", false, "1 old pods terminating", ""},
		{"deployment not available", &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 1}}, "Deployment", false, "1 of 2 pods available", ""},
		{"deployment stuck", &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "ProgressDeadlineExceeded", Message: "too slow"}}}}, "Deployment", false, "", "progress deadline"},
		{"statefulset done", &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Replicas: &two},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 3, UpdatedReplicas: 2, ReadyReplicas: 2, CurrentRevision: "b", UpdateRevision: "b"}}, "StatefulSet", true, "", ""},
		{"statefulset rolling", &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Replicas: &two},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 3, UpdatedReplicas: 2, ReadyReplicas: 2, CurrentRevision: "a", UpdateRevision: "b"}}, "StatefulSet", false, "2 of 2 pods updated", ""},
		{"statefulset on delete", &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Replicas: &two, UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 3}}, "StatefulSet", false, "OnDelete", ""},
		{"daemonset done", &appsv1.DaemonSet{ObjectMeta: meta,
			Status: appsv1.DaemonSetStatus{ObservedGeneration: 3, DesiredNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberAvailable: 1}}, "DaemonSet", true, "", ""},
		{"daemonset rolling", &appsv1.DaemonSet{ObjectMeta: meta,
			Status: appsv1.DaemonSetStatus{ObservedGeneration: 3, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 1, NumberAvailable: 2}}, "DaemonSet", false, "1 of 2 pods updated", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, _ := fakeKube(false, tt.obj)
			done, msg, err := rolloutDone(context.Background(), k, workloadRef{tt.kind, "ns", "w"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || done != tt.done || !strings.Contains(msg, tt.msg) {
				t.Fatalf("rolloutDone = %v, %q, %v; want %v, %q", done, msg, err, tt.done, tt.msg)
			}
		})
	}
}

func TestOwnerWorkload(t *testing.T) {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-rs", Namespace: "ns", OwnerReferences: []metav1.OwnerReference{ctrlRef("Deployment", "web")}}}
	orphanRS := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "lonely", Namespace: "ns"}}
	k, _ := fakeKube(false, rs, orphanRS)
	pod := func(kind, name string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
		if kind != "" {
			p.OwnerReferences = []metav1.OwnerReference{ctrlRef(kind, name)}
		}
		return p
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want workloadRef
		ok   bool
	}{
		{"deployment", pod("ReplicaSet", "web-rs"), workloadRef{"Deployment", "ns", "web"}, true},
		{"statefulset", pod("StatefulSet", "db"), workloadRef{"StatefulSet", "ns", "db"}, true},
		{"daemonset", pod("DaemonSet", "agent"), workloadRef{"DaemonSet", "ns", "agent"}, true},
		{"bare pod", pod("", ""), workloadRef{}, false},
		{"job", pod("Job", "once"), workloadRef{}, false},
		{"replicaset alone", pod("ReplicaSet", "lonely"), workloadRef{}, false},
		{"replicaset gone", pod("ReplicaSet", "gone"), workloadRef{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := ownerWorkload(context.Background(), k, tt.pod)
			if err != nil || ok != tt.ok || got != tt.want {
				t.Fatalf("ownerWorkload = %+v, %v, %v; want %+v, %v", got, ok, err, tt.want, tt.ok)
			}
		})
	}
}

// TestWaitTerminated: it waits for the terminating pods of the given
// workloads only, and names them when they outlast the timeout.
func TestWaitTerminated(t *testing.T) {
	now := metav1.Now()
	rs := func(name, deploy string) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "conduit", OwnerReferences: []metav1.OwnerReference{ctrlRef("Deployment", deploy)}}}
	}
	pod := func(name, rs string, terminating bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "conduit", OwnerReferences: []metav1.OwnerReference{ctrlRef("ReplicaSet", rs)}}}
		if terminating {
			p.DeletionTimestamp = &now
			p.Finalizers = []string{"test"} // a terminating object keeps a finalizer
		}
		return p
	}
	k, cs := fakeKube(false,
		rs("injector-old", "conduit-injector"), rs("injector-new", "conduit-injector"), rs("other-old", "other"),
		pod("injector-old-1", "injector-old", true), pod("injector-new-1", "injector-new", false), pod("other-old-1", "other-old", true))
	ws := []workloadRef{{"Deployment", "conduit", "conduit-injector"}}
	ctx := context.Background()

	var told []string
	progress := func(s string) { told = append(told, s) }
	err := waitTerminated(ctx, k, ws, 5*time.Millisecond, 50*time.Millisecond, progress)
	if err == nil || !strings.Contains(err.Error(), "conduit/injector-old-1") || strings.Contains(err.Error(), "other-old-1") {
		t.Fatalf("waitTerminated with an old pod left = %v, want an error naming conduit/injector-old-1 only", err)
	}
	if len(told) != 1 || !strings.Contains(told[0], "waiting for the old pods to exit: conduit/injector-old-1") {
		t.Errorf("progress = %q, want one line naming the old pod", told)
	}

	go func() {
		time.Sleep(30 * time.Millisecond)
		_ = cs.CoreV1().Pods("conduit").Delete(ctx, "injector-old-1", metav1.DeleteOptions{})
	}()
	start := time.Now()
	if err := waitTerminated(ctx, k, ws, 5*time.Millisecond, 10*time.Second, func(string) {}); err != nil {
		t.Fatalf("waitTerminated once the old pod exited: %v", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Errorf("waitTerminated returned after %s, before the old pod exited", d)
	}
}
