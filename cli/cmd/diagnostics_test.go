package cmd

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// fakeForward serves /metrics for every pod: "<pod>:<port> 1".
func fakeForward(t *testing.T, failPod string) {
	t.Helper()
	var calls []string
	old := portForward
	portForward = func(_ context.Context, _ *Kube, ns, pod string, port int) (string, func(), error) {
		calls = append(calls, fmt.Sprintf("%s/%s:%d", ns, pod, port))
		if pod == failPod {
			return "", nil, fmt.Errorf("pod %s/%s is Pending, not Running", ns, pod)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/metrics" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintf(w, "up{pod=%q,port=\"%d\"} 1\n", pod, port)
		}))
		return strings.TrimPrefix(srv.URL, "http://"), srv.Close, nil
	}
	t.Cleanup(func() { portForward = old })
}

func cpPod(name, component string) runtime.Object {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "conduit", Labels: map[string]string{componentLabel: component}}}
}

func TestProxyMetrics(t *testing.T) {
	fakeForward(t, "")
	k, _ := fakeKube(true)
	out, _, err := runWith(t, k, "diagnostics", "proxy-metrics", "-n", "shop", "pod/web-1")
	if err != nil || out != "up{pod=\"web-1\",port=\"4191\"} 1\n" {
		t.Fatalf("proxy-metrics = %q, %v", out, err)
	}
	if _, _, err := runWith(t, k, "diagnostics", "proxy-metrics"); err == nil {
		t.Fatal("proxy-metrics without a pod was accepted")
	}
}

func TestControllerMetrics(t *testing.T) {
	objs := []runtime.Object{cpPod("conduit-identity-1", "identity"), cpPod("conduit-destination-1", "destination"), cpPod("conduit-injector-1", "injector")}
	t.Run("all", func(t *testing.T) {
		fakeForward(t, "")
		out, _, err := runWith(t, must(fakeKube(true, objs...)), "diagnostics", "controller-metrics")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "controller_metrics.golden", out)
	})
	t.Run("one component", func(t *testing.T) {
		fakeForward(t, "")
		out, _, err := runWith(t, must(fakeKube(true, objs...)), "diagnostics", "controller-metrics", "--component", "destination")
		if err != nil || strings.Count(out, "# POD") != 1 || !strings.Contains(out, `port="9996"`) {
			t.Fatalf("out = %q, %v", out, err)
		}
	})
	t.Run("a pod fails", func(t *testing.T) {
		fakeForward(t, "conduit-injector-1")
		out, _, err := runWith(t, must(fakeKube(true, objs...)), "diagnostics", "controller-metrics")
		if err == nil || !strings.Contains(err.Error(), "conduit-injector-1: pod conduit/conduit-injector-1 is Pending") || strings.Count(out, "# POD") != 2 {
			t.Fatalf("out = %q, err = %v", out, err)
		}
	})
	t.Run("no control plane", func(t *testing.T) {
		_, _, err := runWith(t, must(fakeKube(true)), "diagnostics", "controller-metrics")
		if err == nil || !strings.Contains(err.Error(), "is Conduit installed") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad component", func(t *testing.T) {
		_, _, err := runWith(t, must(fakeKube(true, objs...)), "diagnostics", "controller-metrics", "--component", "web")
		if err == nil || !strings.Contains(err.Error(), "accepted: destination, identity, injector") {
			t.Fatalf("err = %v", err)
		}
	})
}
