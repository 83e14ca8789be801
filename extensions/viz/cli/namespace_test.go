package cli

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestExtensionLabel: viz's namespace carries the label mesh finds
// extensions by (declared twice: the plugin does not link the host).
func TestExtensionLabel(t *testing.T) {
	if ExtensionLabel != pluginhost.LabelExtension {
		t.Errorf("ExtensionLabel = %q, pluginhost.LabelExtension = %q", ExtensionLabel, pluginhost.LabelExtension)
	}
}

func vizNamespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{ExtensionLabel: "viz"}}}
}

// refused is a clientset whose every call gets no answer, as client-go
// reports it when the API server is down.
func refused() *fake.Clientset {
	kc := fake.NewClientset()
	kc.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/api/v1/namespaces", Err: syscall.ECONNREFUSED}
	})
	return kc
}

func forbidden() *fake.Clientset {
	kc := fake.NewClientset()
	kc.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "", errors.New("RBAC"))
	})
	return kc
}

// TestResolveVizNamespace: the query commands and the dashboard use
// --viz-namespace, else the namespace labelled conduit.dev/extension=viz
// (they used conduit-viz, so viz installed with --set namespace=X was not
// found), else conduit-viz.
func TestResolveVizNamespace(t *testing.T) {
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring", Labels: map[string]string{ExtensionLabel: "grafana"}}}
	for _, tc := range []struct {
		name, flag string
		kc         *fake.Clientset
		want       string
		wantErr    string
	}{
		{"labelled", "", fake.NewClientset(vizNamespace("viz-x"), other), "viz-x", ""},
		{"none labelled", "", fake.NewClientset(other), DefaultVizNamespace, ""},
		{"flag wins", "mine", fake.NewClientset(vizNamespace("viz-x")), "mine", ""},
		{"flag needs no list", "mine", refused(), "mine", ""},
		{"may not list namespaces", "", forbidden(), DefaultVizNamespace, ""},
		{"two labelled", "", fake.NewClientset(vizNamespace("viz-b"), vizNamespace("viz-a")), "",
			"viz: 2 namespaces are labelled conduit.dev/extension=viz (viz-a, viz-b): viz is installed more than once: choose one with --viz-namespace"},
		{"unreachable", "", refused(), "", "viz: listing the namespaces labelled conduit.dev/extension=viz: Get"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveVizNamespace(context.Background(), tc.kc, tc.flag)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestCheckFindsNamespace: `mesh viz check` checks the namespace labelled
// conduit.dev/extension=viz (it checked conduit-viz only); with none it
// checks conduit-viz and says viz is not installed; with two it says so.
func TestCheckFindsNamespace(t *testing.T) {
	ready := func(ns string) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "metrics-api", Namespace: ns, Labels: map[string]string{ExtensionLabel: "viz"}},
			Status: appsv1.DeploymentStatus{AvailableReplicas: 1, Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: "True"}}}}
	}
	up := scraper{s: metrics.ScrapeStatus{Targets: 1, Up: 1}}
	for _, tc := range []struct {
		name  string
		kc    *fake.Clientset
		vizNS string
		// want is the description of the first check, and of the failed
		// one with its error when wantErr is set.
		want, wantErr string
	}{
		{"installed elsewhere", fake.NewClientset(vizNamespace("viz-x"), ready("viz-x")), "", "viz namespace viz-x exists", ""},
		{"default", fake.NewClientset(vizNamespace("conduit-viz"), ready("conduit-viz")), "", "viz namespace conduit-viz exists", ""},
		{"may not list namespaces", func() *fake.Clientset {
			kc := forbidden()
			_ = kc.Tracker().Add(vizNamespace("conduit-viz"))
			_ = kc.Tracker().Add(ready("conduit-viz"))
			return kc
		}(), "", "viz namespace conduit-viz exists", ""},
		{"explicit namespace", fake.NewClientset(vizNamespace("viz-x"), ready("viz-x")), "viz-x", "viz namespace viz-x exists", ""},
		{"not installed", fake.NewClientset(), "", "viz namespace conduit-viz exists",
			"namespace conduit-viz not found, and no namespace is labelled conduit.dev/extension=viz"},
		{"unlabelled default", fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz"}}), "",
			"namespace conduit-viz is labelled conduit.dev/extension=viz", "namespace conduit-viz has no label conduit.dev/extension=viz"},
		{"installed twice", fake.NewClientset(vizNamespace("viz-a"), vizNamespace("viz-b")), "", "viz is installed in one namespace",
			"2 namespaces are labelled conduit.dev/extension=viz (viz-a, viz-b)"},
		{"unreachable", refused(), "", "viz namespace exists", "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Check(context.Background(), tc.kc, up, tc.vizNS)[0].Checks
			if c[0].Description != tc.want {
				t.Errorf("first check %q, want %q", c[0].Description, tc.want)
			}
			last := c[len(c)-1]
			if tc.wantErr == "" {
				for _, r := range c {
					if r.Status != sdk.StatusOK {
						t.Errorf("check %q: %s %s", r.Description, r.Status, r.Error)
					}
				}
				return
			}
			if last.Status != sdk.StatusFail || !strings.Contains(last.Error, tc.wantErr) || last.Hint == "" {
				t.Errorf("last check = %+v, want a failure with %q", last, tc.wantErr)
			}
		})
	}
}
