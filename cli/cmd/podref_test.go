package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// workloadPod is a pod of app in shop, in phase, deleted when deleting.
func workloadPod(name, app string, phase corev1.PodPhase, deleting bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": app}},
		Status: corev1.PodStatus{Phase: phase}}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
		p.Finalizers = []string{"test"} // the fake keeps it
	}
	return p
}

func selectorOf(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

// workloadObjects: deployment web with two running pods (listed out of
// order), one pending and one being deleted; one pod of each other kind;
// deployment idle with none running; deployment open selecting everything.
func workloadObjects() []runtime.Object {
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "shop"} }
	return []runtime.Object{
		&appsv1.Deployment{ObjectMeta: meta("web"), Spec: appsv1.DeploymentSpec{Selector: selectorOf("web")}},
		workloadPod("web-b", "web", corev1.PodRunning, false),
		workloadPod("web-a", "web", corev1.PodRunning, false),
		workloadPod("web-pending", "web", corev1.PodPending, false),
		workloadPod("web-old", "web", corev1.PodRunning, true),
		&appsv1.StatefulSet{ObjectMeta: meta("db"), Spec: appsv1.StatefulSetSpec{Selector: selectorOf("db")}},
		workloadPod("db-0", "db", corev1.PodRunning, false),
		&appsv1.DaemonSet{ObjectMeta: meta("agent"), Spec: appsv1.DaemonSetSpec{Selector: selectorOf("agent")}},
		workloadPod("agent-x", "agent", corev1.PodRunning, false),
		&appsv1.ReplicaSet{ObjectMeta: meta("web-5d8c"), Spec: appsv1.ReplicaSetSpec{Selector: selectorOf("web")}},
		&batchv1.Job{ObjectMeta: meta("once"), Spec: batchv1.JobSpec{Selector: selectorOf("once")}},
		workloadPod("once-q", "once", corev1.PodRunning, false),
		workloadPod("once-done", "once", corev1.PodSucceeded, false),
		&appsv1.Deployment{ObjectMeta: meta("idle"), Spec: appsv1.DeploymentSpec{Selector: selectorOf("idle")}},
		&appsv1.Deployment{ObjectMeta: meta("open"), Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{}}},
	}
}

func TestResolvePods(t *testing.T) {
	cs := fake.NewClientset(workloadObjects()...)
	for _, tc := range []struct {
		arg      string
		pods     []string
		workload bool
		wantErr  string
	}{
		{arg: "web-a", pods: []string{"web-a"}},
		{arg: "pod/web-x", pods: []string{"web-x"}}, // a pod's name is not looked up
		{arg: "pods/web-a", pods: []string{"web-a"}},
		{arg: "po/web-a", pods: []string{"web-a"}},
		{arg: "deploy/web", pods: []string{"web-a", "web-b"}, workload: true},
		{arg: "deployment/web", pods: []string{"web-a", "web-b"}, workload: true},
		{arg: "Deployments/web", pods: []string{"web-a", "web-b"}, workload: true},
		{arg: "sts/db", pods: []string{"db-0"}, workload: true},
		{arg: "ds/agent", pods: []string{"agent-x"}, workload: true},
		{arg: "rs/web-5d8c", pods: []string{"web-a", "web-b"}, workload: true},
		{arg: "job/once", pods: []string{"once-q"}, workload: true},
		{arg: "deploy/missing", wantErr: "deployment missing not found in namespace shop"},
		{arg: "sts/web", wantErr: "statefulset web not found in namespace shop"},
		{arg: "deploy/idle", wantErr: "deployment shop/idle has no running pod ('kubectl -n shop get pods -l app=idle')"},
		{arg: "deploy/open", wantErr: "deployment shop/open has no usable pod selector"},
		{arg: "svc/web", wantErr: `"svc/web": unknown resource type "svc" (accepted: pod, deploy, sts, ds, rs, job)`},
		{arg: "deploy/", wantErr: `"deploy/" is not a pod or TYPE/NAME`},
		{arg: "deploy/web/x", wantErr: `"deploy/web/x" is not a pod or TYPE/NAME`},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			ref, err := resolvePods(context.Background(), cs, "shop", tc.arg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ref.pods, tc.pods) || ref.workload != tc.workload || ref.ns != "shop" || ref.arg != tc.arg {
				t.Fatalf("resolvePods(%q) = %+v, want pods %v, workload %v", tc.arg, ref, tc.pods, tc.workload)
			}
		})
	}
}

// fakeProxies points portForward at one fake proxy admin server per pod
// of shop: handler answers for each, and a pod not in it is not reachable.
// It returns the pods forwarded to, in order.
func fakeProxies(t *testing.T, handlers map[string]http.HandlerFunc) func() []string {
	t.Helper()
	addrs := map[string]string{}
	for pod, h := range handlers {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		addrs[pod] = strings.TrimPrefix(srv.URL, "http://")
	}
	var mu sync.Mutex
	var seen []string
	old, oldNow := portForward, identityNow
	portForward = func(_ context.Context, _ *Kube, ns, pod string, port int) (string, func(), error) {
		mu.Lock()
		seen = append(seen, pod)
		mu.Unlock()
		addr, ok := addrs[pod]
		if ns != "shop" || port != proxyAdminPort || !ok {
			return "", nil, fmt.Errorf("pod %s/%s:%d is not reachable", ns, pod, port)
		}
		return addr, func() {}, nil
	}
	identityNow = func() time.Time { return idTestNow }
	t.Cleanup(func() { portForward, identityNow = old, oldNow })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

func TestIdentityOfAWorkload(t *testing.T) {
	a := newFixedChain(t, "a", idTestNow.Add(22*time.Hour))
	cert := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != proxyCertificatePath {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(a.pem()))
	}
	noCert := func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no certificate yet", http.StatusServiceUnavailable)
	}
	objs := append(workloadObjects(), rootsConfigMap(a.anchor))
	for _, tc := range []struct {
		name     string
		args     []string
		handlers map[string]http.HandlerFunc
		pods     []string // of the reports
		wantErr  []string
	}{
		{name: "text", args: []string{"deploy/web"}, handlers: map[string]http.HandlerFunc{"web-a": cert, "web-b": cert}, pods: []string{"shop/web-a", "shop/web-b"}},
		{name: "json", args: []string{"deploy/web", "-o", "json"}, handlers: map[string]http.HandlerFunc{"web-a": cert, "web-b": cert}, pods: []string{"shop/web-a", "shop/web-b"}},
		{name: "json of one pod of a workload", args: []string{"sts/db", "-o", "json"}, handlers: map[string]http.HandlerFunc{"db-0": cert}, pods: []string{"shop/db-0"}},
		{name: "one pod without a certificate", args: []string{"deploy/web"}, handlers: map[string]http.HandlerFunc{"web-a": noCert, "web-b": cert}, pods: []string{"shop/web-b"},
			wantErr: []string{"1 of the 2 pods of deploy/web failed", "the proxy of shop/web-a has no certificate yet"}},
		{name: "json, one pod not reachable", args: []string{"deploy/web", "-o", "json"}, handlers: map[string]http.HandlerFunc{"web-b": cert}, pods: []string{"shop/web-b"},
			wantErr: []string{"1 of the 2 pods of deploy/web failed", "pod shop/web-a:4191 is not reachable"}},
		{name: "pem of two pods", args: []string{"deploy/web", "-o", "pem"}, handlers: map[string]http.HandlerFunc{"web-a": cert, "web-b": cert},
			wantErr: []string{"-o pem prints the chain of one pod, and deploy/web has 2 (web-a, web-b): name one"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeProxies(t, tc.handlers)
			k, _ := fakeKube(false, objs...)
			out, _, err := runWith(t, k, append([]string{"identity", "-n", "shop"}, tc.args...)...)
			for _, want := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want it to contain %q", err, want)
				}
			}
			if tc.wantErr == nil && err != nil {
				t.Fatal(err)
			}
			var got []string
			if slices.Contains(tc.args, "json") {
				var reports []certReport
				if err := json.Unmarshal([]byte(out), &reports); err != nil {
					t.Fatalf("-o json of a workload is not a list of reports: %v\n%s", err, out)
				}
				for _, r := range reports {
					if !r.Trusted {
						t.Errorf("%s: not trusted: %s", r.Pod, r.TrustDetail)
					}
					got = append(got, r.Pod)
				}
			} else {
				for _, line := range strings.Split(out, "\n") {
					if pod, ok := strings.CutPrefix(line, "Pod:"); ok {
						got = append(got, strings.TrimSpace(pod))
					}
				}
				if len(got) > 1 && strings.Count(out, "\n\nPod:") != len(got)-1 {
					t.Errorf("the reports are not one blank line apart:\n%s", out)
				}
			}
			if !slices.Equal(got, tc.pods) {
				t.Errorf("reports of %v, want %v:\n%s", got, tc.pods, out)
			}
		})
	}
}

func TestProxyCommandsOfAWorkload(t *testing.T) {
	objs := workloadObjects()
	level := map[string]string{"web-a": "info", "web-b": "info"}
	var mu sync.Mutex
	proxy := func(pod string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/metrics":
				fmt.Fprintf(w, "request_total{pod=%q} 1\n", pod)
			case r.URL.Path == "/proxy-log-level" && r.Method == http.MethodPut:
				b := make([]byte, 16)
				n, _ := r.Body.Read(b)
				mu.Lock()
				level[pod] = string(b[:n])
				mu.Unlock()
				fmt.Fprintln(w, string(b[:n]))
			case r.URL.Path == "/proxy-log-level":
				mu.Lock()
				fmt.Fprintln(w, level[pod])
				mu.Unlock()
			default:
				http.NotFound(w, r)
			}
		}
	}
	seen := fakeProxies(t, map[string]http.HandlerFunc{"web-a": proxy("web-a"), "web-b": proxy("web-b")})
	k, _ := fakeKube(false, objs...)
	run := func(args ...string) string {
		t.Helper()
		out, _, err := runWith(t, k, append([]string{"diagnostics", "-n", "shop"}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	if out, want := run("proxy-metrics", "deploy/web"), "#\n# POD shop/web-a (1 of 2)\n#\nrequest_total{pod=\"web-a\"} 1\n"+
		"#\n# POD shop/web-b (2 of 2)\n#\nrequest_total{pod=\"web-b\"} 1\n"; out != want {
		t.Errorf("proxy-metrics deploy/web:\n%s\nwant:\n%s", out, want)
	}
	if out, want := run("proxy-metrics", "web-b"), "request_total{pod=\"web-b\"} 1\n"; out != want {
		t.Errorf("proxy-metrics web-b (one pod, as before): %q, want %q", out, want)
	}
	if out, want := run("proxy-log-level", "deploy/web", "debug"), "shop/web-a: debug\nshop/web-b: debug\n"; out != want {
		t.Errorf("proxy-log-level deploy/web debug: %q, want %q", out, want)
	}
	if out, want := run("proxy-log-level", "pod/web-a"), "debug\n"; out != want {
		t.Errorf("proxy-log-level pod/web-a: %q, want %q", out, want)
	}
	if got, want := seen(), []string{"web-a", "web-b", "web-b", "web-a", "web-b", "web-a"}; !slices.Equal(got, want) {
		t.Errorf("port-forwarded to %v, want %v (pending and deleted pods skipped)", got, want)
	}
	// A pod that fails does not stop the others; the error names it.
	fakeProxies(t, map[string]http.HandlerFunc{"web-b": proxy("web-b")})
	out, _, err := runWith(t, k, "diagnostics", "-n", "shop", "proxy-metrics", "rs/web-5d8c")
	if err == nil || !strings.Contains(err.Error(), "1 of the 2 pods of rs/web-5d8c failed") || !strings.Contains(err.Error(), "shop/web-a") ||
		!strings.Contains(out, "# POD shop/web-b (2 of 2)\n#\nrequest_total") || strings.Contains(out, "web-a") {
		t.Fatalf("proxy-metrics rs/web-5d8c with web-a unreachable: err %v, want one naming web-a; output (web-b's alone):\n%s", err, out)
	}
}
