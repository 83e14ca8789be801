package cmd

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/conduit-mesh/conduit/proxy/admin"
	"github.com/conduit-mesh/conduit/proxy/metrics"
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

// TestProxyLogLevel drives the proxy's own admin handler through the
// (faked) port-forward: print, set, a bad level refused before any
// port-forward, a pod without a proxy.
func TestProxyLogLevel(t *testing.T) {
	lv := new(slog.LevelVar)
	var forwarded []string
	old := portForward
	portForward = func(_ context.Context, _ *Kube, ns, pod string, port int) (string, func(), error) {
		forwarded = append(forwarded, fmt.Sprintf("%s/%s:%d", ns, pod, port))
		if pod == "plain" {
			return "", nil, fmt.Errorf("pod %s/%s has no port %d", ns, pod, port)
		}
		srv := httptest.NewServer(admin.Handler(admin.Options{Metrics: metrics.New(), LogLevel: lv}))
		return strings.TrimPrefix(srv.URL, "http://"), srv.Close, nil
	}
	t.Cleanup(func() { portForward = old })
	k, _ := fakeKube(true)
	for _, tc := range []struct {
		args  []string
		out   string
		err   string
		level slog.Level
	}{
		{args: []string{"web-1"}, out: "info\n", level: slog.LevelInfo},
		{args: []string{"pod/web-1", "debug"}, out: "debug\n", level: slog.LevelDebug},
		{args: []string{"web-1"}, out: "debug\n", level: slog.LevelDebug},
		{args: []string{"web-1", "loud"}, err: `invalid level "loud" (accepted: debug, info, warn, error)`, level: slog.LevelDebug},
		{args: []string{"plain", "info"}, err: "has no port 4191 (is shop/plain meshed?", level: slog.LevelDebug},
		{args: []string{"web-1", "info"}, out: "info\n", level: slog.LevelInfo},
	} {
		out, _, err := runWith(t, k, append([]string{"diagnostics", "proxy-log-level", "-n", "shop"}, tc.args...)...)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.err)
			}
		} else if err != nil || out != tc.out {
			t.Errorf("%v: %q %v, want %q", tc.args, out, err, tc.out)
		}
		if lv.Level() != tc.level {
			t.Errorf("%v: the proxy's level is %v, want %v", tc.args, lv.Level(), tc.level)
		}
	}
	if want := "shop/web-1:4191 shop/web-1:4191 shop/web-1:4191 shop/plain:4191 shop/web-1:4191"; strings.Join(forwarded, " ") != want {
		t.Errorf("port-forwards %q, want %q (none for a bad level)", forwarded, want)
	}
}
