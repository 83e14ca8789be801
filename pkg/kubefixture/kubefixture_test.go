package kubefixture

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestDecode(t *testing.T) {
	typed, custom, err := Decode(`# a comment before the first document
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
---
# comments only
---
apiVersion: conduit.dev/v1alpha2
kind: ServiceProfile
metadata: {name: web.shop.svc.cluster.local, namespace: shop}
spec: {routes: [{name: all, condition: {pathRegex: /}}]}
`, `apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop}
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(typed) != 2 || len(custom) != 1 {
		t.Fatalf("%d typed and %d custom objects, want 2 and 1", len(typed), len(custom))
	}
	if s, ok := typed[0].(*corev1.Service); !ok || s.Name != "web" || s.Namespace != "shop" {
		t.Errorf("first typed object %#v, want Service shop/web", typed[0])
	}
	if p, ok := typed[1].(*corev1.Pod); !ok || p.Name != "web-0" {
		t.Errorf("second typed object %#v, want Pod web-0", typed[1])
	}
	u, ok := custom[0].(*unstructured.Unstructured)
	if !ok || u.GetKind() != "ServiceProfile" || u.GetAPIVersion() != "conduit.dev/v1alpha2" {
		t.Fatalf("custom object %#v, want an unstructured ServiceProfile", custom[0])
	}
	if routes, _, _ := unstructured.NestedSlice(u.Object, "spec", "routes"); len(routes) != 1 {
		t.Errorf("the ServiceProfile's routes: %v, want one", routes)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"not YAML", "apiVersion: v1\nkind: [Service\n", "kubefixture:"},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", "without apiVersion or kind"},
		{"no apiVersion", "kind: Pod\nmetadata: {name: x}\n", "without apiVersion or kind"},
		{"a typed kind that does not decode", "apiVersion: v1\nkind: Pod\nspec: {containers: 5}\n", "kubefixture:"},
	} {
		_, _, err := Decode(tc.doc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
