//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// injectorApps: in the meshed namespace a server (HTTP on 8080, TCP echo on
// 9000, a skipped inbound port) behind a Service, a client and a Job.
func injectorApps(image string) string {
	return manifests(fmt.Sprintf(injectorServerAndJob, image), sleeperPod("client", image))
}

// injectorServerAndJob is injectorApps without the client.
const injectorServerAndJob = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: server}
spec:
  replicas: 1
  selector: {matchLabels: {app: server}}
  template:
    metadata:
      labels: {app: server}
      annotations: {config.conduit.dev/skip-inbound-ports: "9000"}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: %[1]s
        imagePullPolicy: IfNotPresent
        args: [serve, -addr, ":8080", -tcp-addr, ":9000"]
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [{name: http, containerPort: 8080}, {name: echo, containerPort: 9000}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  selector: {app: server}
  ports: [{name: http, port: 8080, targetPort: http}, {name: echo, port: 9000, targetPort: echo}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  backoffLimit: 3
  activeDeadlineSeconds: 180
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: %[1]s, imagePullPolicy: IfNotPresent, args: [get, "http://server:8080/"]}]
`

func injected(p *corev1.Pod) bool {
	return len(p.Spec.InitContainers) >= 2 && p.Spec.InitContainers[0].Name == "conduit-init" &&
		p.Spec.InitContainers[1].Name == "conduit-proxy" && p.Annotations["conduit.dev/inject-status"] == "injected"
}

// createInjected creates p and returns it once injected, or the API
// server's refusal. The webhook's failurePolicy is Ignore, so a pod created
// while the injector is restarting (other tests reinstall the mesh) is
// admitted as is: such a pod is deleted and created again, for a minute.
func createInjected(t *testing.T, f *framework.Framework, ns string, p *corev1.Pod) (*corev1.Pod, error) {
	t.Helper()
	f.WaitPodsReady(t, framework.ControlPlaneNamespace, "conduit.dev/control-plane-component=injector", 1, 2*time.Minute)
	var created *corev1.Pod
	var createErr error
	f.WaitFor(t, "pod "+p.Name+" to be injected or refused", time.Minute, func(ctx context.Context) (bool, error) {
		created, createErr = f.Client.CoreV1().Pods(ns).Create(ctx, p.DeepCopy(), metav1.CreateOptions{})
		if createErr != nil {
			return !apierrors.IsAlreadyExists(createErr), nil
		}
		if injected(created) {
			return true, nil
		}
		zero := int64(0)
		_ = f.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		return false, nil
	})
	return created, createErr
}

// proxyCounter sums a metric of a pod's proxy (a counter, or a gauge such as
// process_resident_memory_bytes), over the series whose labels contain every
// string of match; 0 when there is none.
func proxyCounter(t *testing.T, f *framework.Framework, ns, pod, name string, match ...string) float64 {
	t.Helper()
	code, body, err := adminGet(context.Background(), f.PortForward(t, ns, pod, 4191), "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("metrics of %s/%s: %d %v", ns, pod, code, err)
	}
	return metricSum(body, name, match...)
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestInjector covers the injector with the installed mesh: an annotated
// namespace's Deployment is injected and its inbound and outbound traffic
// goes through the proxy (its metrics), a skipped port bypasses it, a Job
// completes, a pod without the annotation is untouched, and invalid
// annotations get their documented outcome (docs/injector.md).
func TestInjector(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	ctx := framework.Context(t, 5*time.Minute)

	meshed := f.NewNamespace(t, "inject", nil)
	nsObj, err := f.Client.CoreV1().Namespaces().Get(ctx, meshed, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Annotations = map[string]string{"conduit.dev/inject": "enabled"}
	if _, err := f.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	plain := f.NewNamespace(t, "inject-plain", nil)
	f.Apply(t, meshed, injectorApps(f.Image("testapp")))
	f.Apply(t, plain, sleeperPod("plain", f.Image("testapp")))

	servers := f.WaitPodsReady(t, meshed, "app=server", 1, 3*time.Minute)
	f.WaitPodsReady(t, meshed, "app=client", 1, 3*time.Minute)
	f.WaitPodsReady(t, plain, "app=plain", 1, 2*time.Minute)
	// The first meshed request below must already go through both proxies.
	f.WaitEndpoints(t, meshed, "server", 1, time.Minute)
	server := servers[0]

	t.Run("annotated pods are injected", func(t *testing.T) {
		for _, name := range []string{server.Name, "client"} {
			p, err := f.Client.CoreV1().Pods(meshed).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !injected(p) || p.Labels["conduit.dev/control-plane-ns"] != framework.ControlPlaneNamespace || p.Labels["conduit.dev/proxy-version"] == "" {
				t.Errorf("%s not injected: init %v, labels %v", name, p.Spec.InitContainers, p.Labels)
			}
		}
	})
	t.Run("a pod without the annotation is untouched", func(t *testing.T) {
		p, err := f.Client.CoreV1().Pods(plain).Get(ctx, "plain", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.InitContainers) != 0 || len(p.Spec.Containers) != 1 || p.Annotations["conduit.dev/inject-status"] != "" {
			t.Errorf("plain pod changed: %+v", p.Spec)
		}
	})
	t.Run("meshed traffic goes through both proxies", func(t *testing.T) {
		in0 := proxyCounter(t, f, meshed, server.Name, "request_total", `direction="inbound"`)
		out0 := proxyCounter(t, f, meshed, "client", "request_total", `direction="outbound"`)
		out := f.Exec(t, meshed, "client", "client", "testapp", "get", "-n", "5", "http://server:8080/")
		es := decodeEchoes(t, out)
		if len(es) != 5 {
			t.Fatalf("%d answers, want 5:\n%s", len(es), out)
		}
		want := "default." + meshed + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
		if got := es[0].Headers["Conduit-Client-Id"]; len(got) != 1 || got[0] != want {
			t.Errorf("conduit-client-id = %v, want %s (mTLS between the proxies)", got, want)
		}
		if in := proxyCounter(t, f, meshed, server.Name, "request_total", `direction="inbound"`); in < in0+5 {
			t.Errorf("server proxy inbound requests %v -> %v, want +5", in0, in)
		}
		if o := proxyCounter(t, f, meshed, "client", "request_total", `direction="outbound"`); o < out0+5 {
			t.Errorf("client proxy outbound requests %v -> %v, want +5", out0, o)
		}
	})
	t.Run("X-Forwarded fields pass untouched", func(t *testing.T) {
		// The proxies add none (the application sees no proxy's address)
		// and pass a client's own as sent (proxy/app's
		// TestForwardedFieldsUntouched covers every relay mode).
		own := []string{"-H", "X-Forwarded-For: 203.0.113.7, 198.51.100.2", "-H", "X-Forwarded-Proto: https", "-H", "Forwarded: for=203.0.113.7"}
		for _, c := range []struct {
			name string
			args []string
			want map[string]string
		}{
			{"HTTP/1.1, none sent", nil, nil},
			{"h2c, none sent", []string{"-h2c"}, nil},
			{"HTTP/1.1, the client's own", own, map[string]string{"X-Forwarded-For": "203.0.113.7, 198.51.100.2", "X-Forwarded-Proto": "https", "Forwarded": "for=203.0.113.7"}},
			{"h2c, the client's own", append([]string{"-h2c"}, own...), map[string]string{"X-Forwarded-For": "203.0.113.7, 198.51.100.2", "X-Forwarded-Proto": "https", "Forwarded": "for=203.0.113.7"}},
		} {
			args := append(append([]string{"testapp", "get"}, c.args...), "http://server:8080/forwarded")
			es := decodeEchoes(t, f.Exec(t, meshed, "client", "client", args...))
			if len(es) != 1 {
				t.Fatalf("%s: %d answers, want 1", c.name, len(es))
			}
			for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
				got := strings.Join(es[0].Headers[k], " | ")
				if got != c.want[k] {
					t.Errorf("%s: the server saw %s %q, want %q", c.name, k, got, c.want[k])
				}
			}
			if id := es[0].Headers["Conduit-Client-Id"]; len(id) != 1 {
				t.Errorf("%s: conduit-client-id %v: not through both proxies with mTLS", c.name, id)
			}
		}
	})
	t.Run("a HEAD answer keeps its framing", func(t *testing.T) {
		// A HEAD answer tells the length of its GET's body, or, when the
		// application sent its head before its body (?body-delay), none:
		// the client's proxy used to add Content-Length: 0 to the latter
		// for an HTTP/1.1 client (proxy/app's TestResponseAsDirect).
		for _, c := range []struct {
			name string
			args []string
		}{{"HTTP/1.1", nil}, {"h2c", []string{"-h2c"}}} {
			for _, tc := range []struct {
				path   string
				length bool
			}{{"/head", true}, {"/head?body-delay=1s", false}} {
				args := append(append([]string{"testapp", "get", "-X", "HEAD", "-print-head"}, c.args...), "http://server:8080"+tc.path)
				var head struct {
					Status        int                 `json:"status"`
					ContentLength int64               `json:"contentLength"`
					Headers       map[string][]string `json:"headers"`
				}
				out := f.Exec(t, meshed, "client", "client", args...)
				if err := json.Unmarshal([]byte(out), &head); err != nil {
					t.Fatalf("%s %s: %v: %q", c.name, tc.path, err, out)
				}
				cl, sent := head.Headers["Content-Length"]
				switch {
				case head.Status != http.StatusOK:
					t.Errorf("%s HEAD %s: status %d", c.name, tc.path, head.Status)
				case tc.length && (!sent || head.ContentLength <= 0):
					t.Errorf("%s HEAD %s: Content-Length %q (%d), want the length of the GET's body", c.name, tc.path, cl, head.ContentLength)
				case !tc.length && (sent || head.ContentLength != -1):
					t.Errorf("%s HEAD %s: Content-Length %q (%d), want none: the application sent none", c.name, tc.path, cl, head.ContentLength)
				}
			}
		}
	})
	t.Run("no plaintext between meshed pods on the wire", func(t *testing.T) {
		// Control: from a pod without a proxy the request crosses the pod
		// network in clear, and the capture sees it (else the check below
		// would prove nothing).
		_, _, c := capturedMarker(t, func(marker string) string {
			return f.Exec(t, plain, "plain", "plain", "testapp", "get", "-H", "X-E2e-Secret: "+marker, "http://"+server.Status.PodIP+":8080/")
		})
		if c.Seen() == 0 {
			t.Fatalf("the capture did not see an unmeshed client's plaintext request (%d frames captured)", c.Frames())
		}
		// Meshed client to meshed server: only mTLS records on the wire.
		out, marker, c := capturedMarker(t, func(m string) string {
			return f.Exec(t, meshed, "client", "client", "testapp", "get", "-n", "5", "-H", "X-E2e-Secret: "+m, "http://server:8080/")
		})
		if !strings.Contains(out, marker) {
			t.Fatalf("the server did not echo the request's header:\n%s", out)
		}
		if c.Seen() != 0 {
			t.Errorf("a meshed request crossed the pod network in clear: %d of %d frames carried its header", c.Seen(), c.Frames())
		}
		t.Logf("%d frames captured, none with the meshed request's header in clear", c.Frames())
	})
	t.Run("a skipped inbound port bypasses the proxy", func(t *testing.T) {
		// The application reports the peer it saw: the client pod's own
		// address when the connection bypassed the proxy, a local one when
		// the inbound proxy accepted it and dialled the application. (The
		// proxy's connection counters cannot tell: the kubelet's readiness
		// probes open inbound connections at any moment.)
		ip := server.Status.PodIP
		pl, err := f.Client.CoreV1().Pods(plain).Get(context.Background(), "plain", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := f.Exec(t, plain, "plain", "plain", "testapp", "tcp", ip+":9000", "hello")
		if !strings.Contains(out, "hello") {
			t.Fatalf("TCP echo on the skipped port: %q", out)
		}
		if want := "from " + pl.Status.PodIP; !strings.Contains(out, want) {
			t.Errorf("the skipped port went through the proxy: the application answered %q, want a peer of %s", strings.TrimSpace(out), pl.Status.PodIP)
		}
		// The same client on a port that is not skipped does reach the proxy.
		es := decodeEchoes(t, f.Exec(t, plain, "plain", "plain", "testapp", "get", "http://"+ip+":8080/"))
		if len(es) != 1 {
			t.Fatalf("%d answers, want 1", len(es))
		}
		if host, _, _ := net.SplitHostPort(es[0].RemoteAddr); host == pl.Status.PodIP {
			t.Errorf("port 8080 did not go through the proxy: the application saw the client's own address %s", host)
		}
	})
	t.Run("an invalid refused annotation refuses the pod", func(t *testing.T) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "refused", Annotations: map[string]string{"config.conduit.dev/skip-outbound-ports": "https"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: f.Image("testapp"), Args: []string{"sleep"}}}},
		}
		_, err := createInjected(t, f, meshed, p)
		if err == nil || !strings.Contains(err.Error(), "config.conduit.dev/skip-outbound-ports") || !strings.Contains(err.Error(), "accepted") {
			t.Errorf("want a refusal naming the annotation and the accepted values, got %v", err)
		}
	})
	t.Run("an application port the proxy listens on refuses the pod", func(t *testing.T) {
		// Injected, one of the two would fail to bind 4191 and crash-loop.
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "port-clash"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: f.Image("testapp"), Args: []string{"sleep"},
				Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 4191}}}}},
		}
		_, err := createInjected(t, f, meshed, p)
		if err == nil || !strings.Contains(err.Error(), `container "c" declares port 4191, the proxy's admin port`) || !strings.Contains(err.Error(), "accepted") {
			t.Errorf("want a refusal naming the container, the port and the accepted ports, got %v", err)
		}
	})
	t.Run("an invalid defaulted annotation injects with an Event", func(t *testing.T) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "defaulted", Annotations: map[string]string{"config.conduit.dev/proxy-log-level": "chatty"}},
			Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{Name: "c", Image: f.Image("testapp"), Args: []string{"sleep"}}}},
		}
		created, err := createInjected(t, f, meshed, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range created.Spec.InitContainers[1].Env {
			if e.Name == "CONDUIT_PROXY_LOG_LEVEL" && e.Value != "info" {
				t.Errorf("log level %q, want the default info", e.Value)
			}
		}
		waitInjectionEvent(t, f, meshed, "defaulted", "proxy-log-level")
	})
	t.Run("an application as the proxy's user injects with an Event", func(t *testing.T) {
		// Its traffic would bypass the proxy (proxy-init exempts that user).
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "proxy-uid"},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{Name: "c", Image: f.Image("testapp"), Args: []string{"sleep"},
				SecurityContext: &corev1.SecurityContext{RunAsUser: new(int64(2102))}}}},
		}
		if _, err := createInjected(t, f, meshed, p); err != nil {
			t.Fatal(err)
		}
		waitInjectionEvent(t, f, meshed, "proxy-uid", `container "c" runs as uid 2102, the proxy's`)
	})
	t.Run("mesh inject and mesh inject --manual", func(t *testing.T) {
		// In a namespace without the annotation: `mesh inject` adds it to
		// the pod (the webhook then injects), `--manual` adds the proxy
		// itself (the webhook leaves the pod as it is).
		manifest := func(name string) string {
			p := filepath.Join(t.TempDir(), name+".yaml")
			pod := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, labels: {app: %s}}\nspec:\n  terminationGracePeriodSeconds: 1\n"+
				"  containers: [{name: app, image: %s, imagePullPolicy: IfNotPresent, args: [sleep]}]\n", name, name, f.Image("testapp"))
			if err := os.WriteFile(p, []byte(pod), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		annotated := f.MeshCmd(t, "inject", manifest("by-annotation"))
		if !strings.Contains(annotated, "conduit.dev/inject: enabled") {
			t.Fatalf("mesh inject output:\n%s", annotated)
		}
		f.KubectlCmd(t, annotated, "apply", "-n", plain, "-f", "-")
		// The proxy's identity names the namespace: -n says which one, as kubectl apply -n.
		manual := f.MeshCmd(t, "inject", "--manual", "-n", plain, manifest("by-hand"))
		f.KubectlCmd(t, manual, "apply", "-n", plain, "-f", "-")
		for _, name := range []string{"by-annotation", "by-hand"} {
			pods := f.WaitPodsReady(t, plain, "app="+name, 1, 3*time.Minute)
			if !injected(&pods[0]) {
				t.Errorf("pod %s not injected: init containers %d, annotations %v", name, len(pods[0].Spec.InitContainers), pods[0].Annotations)
			}
		}
		// uninject gives back a pod without the proxy.
		p, err := f.Client.CoreV1().Pods(plain).Get(ctx, "by-hand", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Annotations["conduit.dev/inject-status"] != "injected" {
			t.Errorf("by-hand annotations %v", p.Annotations)
		}
		injectedFile := filepath.Join(t.TempDir(), "by-hand-injected.yaml")
		if err := os.WriteFile(injectedFile, []byte(manual), 0o644); err != nil {
			t.Fatal(err)
		}
		back := f.MeshCmd(t, "uninject", injectedFile)
		if strings.Contains(back, "conduit-proxy") || strings.Contains(back, "conduit-init") || !strings.Contains(back, "name: app") {
			t.Errorf("mesh uninject of the manually injected pod:\n%s", back)
		}
	})
	t.Run("a Job completes", func(t *testing.T) {
		f.WaitFor(t, "job once to succeed", 3*time.Minute, func(ctx context.Context) (bool, error) {
			j, err := f.Client.BatchV1().Jobs(meshed).Get(ctx, "once", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range j.Status.Conditions {
				if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
					return false, fmt.Errorf("job failed: %s", c.Message)
				}
			}
			return j.Status.Succeeded == 1, nil
		})
		// The pod that succeeded ran with the proxy as a native sidecar: its
		// main container's exit completed the Job although the proxy ran on.
		f.WaitFor(t, "an injected pod of the Job to succeed", time.Minute, func(ctx context.Context) (bool, error) {
			pods, err := f.Client.CoreV1().Pods(meshed).List(ctx, metav1.ListOptions{LabelSelector: "job-name=once"})
			if err != nil {
				return false, err
			}
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodSucceeded && injected(&p) {
					return true, nil
				}
			}
			return false, nil
		})
	})
}

// waitInjectionEvent waits for the injector's Warning Event (reason
// ConduitInjection) on pod whose message contains want.
func waitInjectionEvent(t *testing.T, f *framework.Framework, ns, pod, want string) {
	t.Helper()
	f.WaitFor(t, "a ConduitInjection event on "+pod, time.Minute, func(ctx context.Context) (bool, error) {
		evs, err := f.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=ConduitInjection"})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == pod && strings.Contains(e.Message, want) {
				return true, nil
			}
		}
		return false, nil
	})
}
