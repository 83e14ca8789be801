package cmd

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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

type hooksExt struct{}

func (hooksExt) Info() sdk.Info { return sdk.Info{Name: "viz", Version: "1.0.0"} }

// TestAllowFetchesFromAServingPod: allow hashes the binary of a pod that is
// ready and not terminating (right after a rollout, a terminating pod may
// still be marked ready while its server has stopped), newest first, and
// goes on to the next pod when one fails.
func TestAllowFetchesFromAServingPod(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sdk.ServeHooksListener(ctx, lis, hooksExt{}) }()
	t.Cleanup(func() { cancel(); <-served })

	now := time.Now()
	pod := func(name string, age time.Duration, ready, terminating bool) *corev1.Pod {
		p := controlPlanePod("x", name, ready)
		p.Namespace, p.Labels = "conduit-viz", map[string]string{"app": "hooks"}
		p.CreationTimestamp = metav1.NewTime(now.Add(-age))
		if terminating {
			p.DeletionTimestamp = &metav1.Time{Time: now}
		}
		return p
	}
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz", Labels: map[string]string{pluginhost.LabelExtension: "viz"},
			Annotations: map[string]string{pluginhost.AnnotationInjectorHook: "viz-hooks.conduit-viz.svc:8089"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "viz-hooks", Namespace: "conduit-viz"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "hooks"}, Ports: []corev1.ServicePort{{Port: 8089}}}},
		pod("old", 0, true, true),                  // terminating, still marked ready (the newest, to show it is skipped)
		pod("starting", 0, false, false),           // not ready
		pod("broken", time.Minute, true, false),    // ready, newest of the serving: tried first, fails
		pod("serving", 2*time.Minute, true, false), // ready: hashed
	}
	var tried []string
	old := portForward
	portForward = func(_ context.Context, _ *Kube, ns, name string, port int) (string, func(), error) {
		tried = append(tried, name)
		if ns != "conduit-viz" || port != 8089 {
			t.Errorf("port-forward to %s/%s:%d", ns, name, port)
		}
		if name != "serving" {
			return "", nil, errors.New("connection refused")
		}
		return lis.Addr().String(), func() {}, nil
	}
	t.Cleanup(func() { portForward = old })

	k, _ := fakeKube(false, objs...)
	out, stderr, err := runWith(t, k, "extensions", "allow", "viz", "--wait", "0")
	if err != nil {
		t.Fatalf("%v\n%s%s", err, out, stderr)
	}
	if got := strings.Join(tried, ","); got != "broken,serving" {
		t.Errorf("pods tried: %s, want broken,serving", got)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	want := fmt.Sprintf("from pod conduit-viz/serving: %d bytes, sha256:%x", len(b), sum)
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q\nlacks %q", stderr, want)
	}
	al, _, err := pluginhost.ReadAllowList(context.Background(), k.Client, "conduit")
	if err != nil {
		t.Fatal(err)
	}
	if got := al["viz"].SHA256; got != fmt.Sprintf("%x", sum) {
		t.Errorf("allowed digest %s, want the served binary's %x", got, sum)
	}
}
