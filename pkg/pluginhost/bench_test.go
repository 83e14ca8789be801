package pluginhost

import (
	"context"
	"testing"

	"github.com/conduit-mesh/conduit/core/injector"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// BenchmarkInjectorHook measures what an allowed extension's injector hook
// adds to an admission: one PatchPod to a plugin subprocess over go-plugin
// (gRPC on a Unix socket, mutual TLS), with the pod encoded and the patch
// decoded and applied.
func BenchmarkInjectorHook(b *testing.B) {
	sum := selfDigest(b)
	addr := distribute(b, "a")
	cs := fake.NewClientset(allowConfigMap(sum, "a"), extNamespace("conduit-a", "a", "", map[string]string{AnnotationInjectorHook: addr}))
	h := NewHooks(cs, HooksOptions{Namespace: testControlPlane, PluginDir: b.TempDir()})
	defer h.Close()
	if err := h.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Annotations: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}}}
	req := &injector.ContributionRequest{Pod: pod, Patched: pod, Namespace: "web", ProxyPath: "/spec/initContainers/1"}
	c := InjectorContributor{Hooks: h}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ops, err := c.Contribute(context.Background(), req)
		if err != nil || len(ops) != 1 {
			b.Fatalf("ops %v, err %v", ops, err)
		}
	}
}
