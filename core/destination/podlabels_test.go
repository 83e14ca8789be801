package destination

import (
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
