package cmd

import (
	"context"
	"testing"

	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestWriteAllowList: entries are added, replaced and removed one at a
// time, leaving the others; the ConfigMap is created when missing.
func TestWriteAllowList(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit"}}
	k := &Kube{Client: fake.NewClientset(ns)}
	data := func() map[string]string {
		t.Helper()
		cm, err := k.Client.CoreV1().ConfigMaps("conduit").Get(ctx, pluginhost.AllowListName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data
	}
	if err := writeAllowList(ctx, k, "conduit", "viz", "", true); err != nil {
		t.Fatalf("removing from a missing allow-list: %v", err)
	}
	for _, step := range []struct {
		name, value string
		remove      bool
		want        map[string]string
	}{
		{"viz", "sha256:aa", false, map[string]string{"viz": "sha256:aa"}},
		{"hello", "sha256:bb failurePolicy=Fail", false, map[string]string{"viz": "sha256:aa", "hello": "sha256:bb failurePolicy=Fail"}},
		{"viz", "sha256:cc", false, map[string]string{"viz": "sha256:cc", "hello": "sha256:bb failurePolicy=Fail"}},
		{"viz", "", true, map[string]string{"hello": "sha256:bb failurePolicy=Fail"}},
	} {
		if err := writeAllowList(ctx, k, "conduit", step.name, step.value, step.remove); err != nil {
			t.Fatalf("%s %q: %v", step.name, step.value, err)
		}
		got := data()
		if len(got) != len(step.want) {
			t.Fatalf("after %s %q: %v, want %v", step.name, step.value, got, step.want)
		}
		for key, v := range step.want {
			if got[key] != v {
				t.Errorf("after %s %q: %v, want %v", step.name, step.value, got, step.want)
			}
		}
	}
}
