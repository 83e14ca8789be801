package cmd

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestUninstallRefuses(t *testing.T) {
	ext := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz", Labels: map[string]string{extensionLabel: "viz"}}}
	meshed := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{controlPlaneNSLabel: "conduit"}}}
	ownPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "conduit-identity-1", Namespace: "conduit", Labels: map[string]string{controlPlaneNSLabel: "conduit"}}}
	cases := []struct {
		name  string
		objs  []runtime.Object
		force bool
		want  string // "" = prints the objects
	}{
		{"extension installed", []runtime.Object{ext}, false, "viz (namespace conduit-viz)"},
		{"meshed pods remain", []runtime.Object{meshed, ownPod}, false, "1 meshed pods remain: shop/web-1"},
		{"forced", []runtime.Object{ext, meshed}, true, ""},
		{"clean", []runtime.Object{ownPod}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"uninstall"}
			if tc.force {
				args = append(args, "--force")
			}
			out, _, err := runWith(t, must(fakeKube(true, tc.objs...)), args...)
			if tc.want == "" {
				if err != nil || !strings.Contains(out, "kind: Namespace") {
					t.Fatalf("uninstall = %v, %q", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--force") || out != "" {
				t.Fatalf("err = %v, want %q and a hint about --force", err, tc.want)
			}
		})
	}
}
