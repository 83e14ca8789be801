package destination

import (
	"context"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodLabels: the per-endpoint metric labels name the pod's controller
// by its kind, lowercased, except a Job's: k8s_job, since the proxies
// export these labels (prefixed dst_) to Prometheus, whose own label job
// names the scrape job, and viz relabels a Job's pods k8s_job as well.
func TestPodLabels(t *testing.T) {
	yes, no := true, false
	pod := func(sa string, hash string, owners ...metav1.OwnerReference) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-0", Namespace: "ns", OwnerReferences: owners}}
		p.Spec.ServiceAccountName = sa
		if hash != "" {
			p.Labels = map[string]string{"pod-template-hash": hash}
		}
		return p
	}
	owner := func(kind, name string, controller *bool) metav1.OwnerReference {
		return metav1.OwnerReference{Kind: kind, Name: name, Controller: controller}
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want map[string]string
	}{
		{"deployment", pod("web", "7d4b9c", owner("ReplicaSet", "web-7d4b9c", &yes)),
			map[string]string{"pod": "p-0", "serviceaccount": "web", "deployment": "web"}},
		{"replicaset of no deployment", pod("web", "", owner("ReplicaSet", "web-7d4b9c", &yes)),
			map[string]string{"pod": "p-0", "serviceaccount": "web", "replicaset": "web-7d4b9c"}},
		{"statefulset", pod("db", "", owner("StatefulSet", "db", &yes)),
			map[string]string{"pod": "p-0", "serviceaccount": "db", "statefulset": "db"}},
		{"daemonset", pod("agent", "", owner("DaemonSet", "agent", &yes)),
			map[string]string{"pod": "p-0", "serviceaccount": "agent", "daemonset": "agent"}},
		{"job", pod("batch", "", owner("Job", "backup", &yes)),
			map[string]string{"pod": "p-0", "serviceaccount": "batch", "k8s_job": "backup"}},
		{"owner that is not the controller", pod("", "", owner("Job", "backup", &no), owner("Job", "other", nil)),
			map[string]string{"pod": "p-0", "serviceaccount": "default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := podLabels(tc.pod); !maps.Equal(got, tc.want) {
				t.Errorf("podLabels = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestGetFollowsOwnerChanges: the owner labels follow a change of the pod's
// ownerReferences alone (a pod orphaned, or adopted by another ReplicaSet
// whose selector it matches), without any other change to the pod.
func TestGetFollowsOwnerChanges(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s, _, _ := e.get(t, "web.emojivoto.svc.cluster.local:80")
	_ = s.next(t)
	yes := true
	steps := []struct {
		name   string
		owners []metav1.OwnerReference
		want   map[string]string
	}{
		{"orphaned", nil,
			map[string]string{"pod": "web-7d4b9c-aaaaa", "serviceaccount": "web", "zone": "zone-a"}},
		{"adopted by another ReplicaSet", []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-canary", UID: "rs2", Controller: &yes}},
			map[string]string{"pod": "web-7d4b9c-aaaaa", "serviceaccount": "web", "zone": "zone-a", "replicaset": "web-canary"}},
		{"adopted back by its Deployment's ReplicaSet", []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c", UID: "rs1", Controller: &yes}},
			map[string]string{"pod": "web-7d4b9c-aaaaa", "serviceaccount": "web", "zone": "zone-a", "deployment": "web"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			p, err := e.client.CoreV1().Pods("emojivoto").Get(context.Background(), "web-7d4b9c-aaaaa", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p.OwnerReferences = st.owners
			if _, err := e.client.CoreV1().Pods("emojivoto").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			add := s.next(t).GetAdd()
			if len(add.GetAddrs()) != 1 || add.Addrs[0].Addr.GetIp() != "10.0.0.1" {
				t.Fatalf("update %v, want an add of 10.0.0.1 only", add)
			}
			if got := add.Addrs[0].MetricLabels; !maps.Equal(got, st.want) {
				t.Fatalf("labels = %v, want %v", got, st.want)
			}
		})
	}
}

// TestPodRelevantChange: a pod update recomputes the endpoints of its
// Services only when it changes what an endpoint carries; status-only
// updates (conditions, container states, the kubelet's heartbeats), the
// most frequent, do not.
func TestPodRelevantChange(t *testing.T) {
	yes, no := true, false
	base := func() *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d4b9c-aaaaa", Namespace: "emojivoto", ResourceVersion: "1",
			Labels:          map[string]string{"app": "web", "pod-template-hash": "7d4b9c"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-7d4b9c", UID: "rs1", Controller: &yes}},
		}}
		p.Spec.ServiceAccountName = "web"
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = "10.0.0.1"
		return p
	}
	for _, tc := range []struct {
		name   string
		change func(p *corev1.Pod)
		want   bool
	}{
		{"nothing but the resource version", func(p *corev1.Pod) { p.ResourceVersion = "2" }, false},
		{"a condition", func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		}, false},
		{"a container state", func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", RestartCount: 3}}
		}, false},
		{"a non-controller owner added", func(p *corev1.Pod) {
			p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{Kind: "Job", Name: "audit", Controller: &no})
		}, false},
		{"the controller's uid (same kind and name)", func(p *corev1.Pod) { p.OwnerReferences[0].UID = "rs1-again" }, false},
		{"orphaned", func(p *corev1.Pod) { p.OwnerReferences = nil }, true},
		{"adopted by another ReplicaSet", func(p *corev1.Pod) { p.OwnerReferences[0].Name = "web-canary" }, true},
		{"the controller of another kind", func(p *corev1.Pod) { p.OwnerReferences[0].Kind = "Job" }, true},
		{"the owner no longer its controller", func(p *corev1.Pod) { p.OwnerReferences[0].Controller = &no }, true},
		{"a label", func(p *corev1.Pod) { p.Labels["version"] = "v2" }, true},
		{"deleted", func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, c := base(), base()
			tc.change(c)
			if got := podRelevantChange(o, c); got != tc.want {
				t.Errorf("podRelevantChange = %t, want %t", got, tc.want)
			}
		})
	}
}
