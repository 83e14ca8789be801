//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	"github.com/conduit-mesh/conduit/core/destination"
	"github.com/conduit-mesh/conduit/e2e/framework"
	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/record"
)

// repoFile is a path from the repository root.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ensureProfileCRD applies the ServiceProfile CRD of the conduit-crds chart
// (its template lines stripped: it has no other templating).
func ensureProfileCRD(t *testing.T, f *framework.Framework) {
	t.Helper()
	crd := regexp.MustCompile(`(?m)^\s*\{\{-.*\}\}\s*$\n?`).ReplaceAllString(repoFile(t, "charts/conduit-crds/templates/serviceprofile.yaml"), "")
	f.Apply(t, "", crd)
}

// startDestination runs the destination service in-process against the
// real API server and returns a client of its gRPC service.
func startDestination(t *testing.T, f *framework.Framework) (pb.DestinationClient, *record.FakeRecorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sp, err := destination.HasResource(f.Client.Discovery(), v1alpha2.GroupVersionResource)
	if err != nil {
		t.Fatal(err)
	}
	rec := record.NewFakeRecorder(100)
	x, err := destination.NewIndex(destination.Config{
		Client: f.Client, Dynamic: f.Dynamic, ServiceProfiles: sp, Recorder: rec,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := x.Run(ctx); err != nil {
			t.Errorf("destination index: %v", err)
		}
	}()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	destination.NewServer(x, nil).Register(g)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		cancel()
		<-done
	})
	select {
	case <-x.Synced():
	case <-time.After(time.Minute):
		t.Fatal("destination: caches did not sync within a minute")
	}
	return pb.NewDestinationClient(conn), rec
}

// endpointView follows a Get stream and keeps its current endpoint set.
type endpointView struct {
	mu      sync.Mutex
	addrs   map[string]time.Time // ip -> when it was added
	removed map[string]time.Time // ip -> when it was last removed
	exists  bool
	changed chan struct{}
	err     error
}

func watchEndpoints(t *testing.T, c pb.DestinationClient, auth string) *endpointView {
	t.Helper()
	ctx := framework.Context(t, 10*time.Minute)
	s, err := c.Get(ctx, &pb.GetDestination{Path: auth})
	if err != nil {
		t.Fatal(err)
	}
	v := &endpointView{addrs: map[string]time.Time{}, removed: map[string]time.Time{}, changed: make(chan struct{}, 1)}
	go func() {
		for {
			u, err := s.Recv()
			now := time.Now()
			v.mu.Lock()
			if err != nil {
				v.err = err
				v.mu.Unlock()
				return
			}
			switch m := u.Update.(type) {
			case *pb.Update_Add:
				v.exists = true
				for _, a := range m.Add.Addrs {
					v.addrs[a.Addr.Ip] = now
				}
			case *pb.Update_Remove:
				for _, a := range m.Remove.Addrs {
					delete(v.addrs, a.Ip)
					v.removed[a.Ip] = now
				}
			case *pb.Update_NoEndpoints:
				v.exists = m.NoEndpoints.Exists
				for ip := range v.addrs {
					v.removed[ip] = now
				}
				clear(v.addrs)
			}
			v.mu.Unlock()
			select {
			case v.changed <- struct{}{}:
			default:
			}
		}
	}()
	return v
}

func (v *endpointView) ips() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]string, 0, len(v.addrs))
	for ip := range v.addrs {
		out = append(out, ip)
	}
	sort.Strings(out)
	return out
}

// waitFor waits until the stream's set is want (and exists matches).
func (v *endpointView) waitFor(t *testing.T, want []string, exists bool, timeout time.Duration) {
	t.Helper()
	sort.Strings(want)
	deadline := time.After(timeout)
	for {
		v.mu.Lock()
		ok, err := v.exists == exists, v.err
		v.mu.Unlock()
		if err != nil {
			t.Fatalf("stream failed: %v", err)
		}
		if ok && slices.Equal(v.ips(), want) {
			return
		}
		select {
		case <-v.changed:
		case <-deadline:
			t.Fatalf("stream has %v (exists=%t), want %v (exists=%t) within %s", v.ips(), v.exists, want, exists, timeout)
		}
	}
}

// TestDestinationProfileValidation applies good and bad ServiceProfiles: the
// API server refuses each bad one with a message naming the field.
func TestDestinationProfileValidation(t *testing.T) {
	f := framework.New(t)
	ensureProfileCRD(t, f)
	ns := f.NewNamespace(t, "dst-crd", nil)
	dir := filepath.Join("..", "..", "core", "destination", "testdata", "crd")
	ctx := framework.Context(t, 2*time.Minute)
	if r := f.RunKubectl(ctx, "", "apply", "--dry-run=server", "-n", ns, "-f", filepath.Join(dir, "good.yaml")); r.Err != nil {
		t.Fatalf("the good profile was refused: %v\n%s", r.Err, r.Stderr)
	}
	for file, field := range map[string]string{
		"bad-negative-timeout.yaml": "spec.routes[0].timeout",
		"bad-retry-ratio.yaml":      "spec.retryBudget.retryRatio",
		"bad-status-range.yaml":     "spec.routes[0].responseClasses[0].condition.status",
		"bad-two-conditions.yaml":   "spec.routes[0].condition",
		"bad-name.yaml":             "metadata.name",
		"bad-ttl.yaml":              "spec.retryBudget.ttl",
		"bad-duplicate-route.yaml":  "route names must be unique",
		"bad-weights.yaml":          "spec.dstOverrides",
	} {
		t.Run(file, func(t *testing.T) {
			r := f.RunKubectl(ctx, "", "apply", "--dry-run=server", "-n", ns, "-f", filepath.Join(dir, file))
			if r.Err == nil {
				t.Fatalf("%s was accepted", file)
			}
			if !strings.Contains(r.Stderr, field) {
				t.Fatalf("the error does not name %s:\n%s", field, r.Stderr)
			}
		})
	}
}

// TestDestinationIntegration drives a selector-less Service through its
// EndpointSlices and a ServiceProfile with an invalid route, against the
// real API server.
func TestDestinationIntegration(t *testing.T) {
	f := framework.New(t)
	ensureProfileCRD(t, f)
	ns := f.NewNamespace(t, "dst-int", nil)
	c, rec := startDestination(t, f)
	auth := "manual." + ns + ".svc.cluster.local:80"
	v := watchEndpoints(t, c, auth)
	v.waitFor(t, nil, false, 5*time.Second)

	slice := func(ips ...string) string {
		var eps strings.Builder
		for _, ip := range ips {
			fmt.Fprintf(&eps, "\n- addresses: [%s]\n  conditions: {ready: true}", ip)
		}
		if len(ips) == 0 {
			eps.WriteString(" []")
		}
		return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: manual-1, labels: {kubernetes.io/service-name: manual}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:` + eps.String()
	}
	f.Apply(t, ns, `apiVersion: v1
kind: Service
metadata: {name: manual}
spec:
  ports: [{name: http, port: 80}]
`)
	v.waitFor(t, nil, true, 2*time.Second)
	steps := []struct {
		name string
		ips  []string
	}{
		{"two endpoints", []string{"192.0.2.1", "192.0.2.2"}},
		{"scale up", []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
		{"scale down", []string{"192.0.2.3"}},
		{"scale to zero", nil},
	}
	for _, st := range steps {
		start := time.Now()
		f.Apply(t, ns, slice(st.ips...))
		v.waitFor(t, st.ips, true, time.Second)
		t.Logf("%s: stream updated %s after the apply returned", st.name, time.Since(start).Round(time.Millisecond))
	}

	// Profiles: a route with a regex RE2 rejects is left out and reported.
	p, err := c.GetProfile(framework.Context(t, time.Minute), &pb.GetDestination{Path: auth})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := p.Recv(); err != nil || len(first.Routes) != 0 {
		t.Fatalf("first profile: %v, %v", first, err)
	}
	f.Apply(t, ns, fmt.Sprintf(`apiVersion: conduit.dev/v1alpha2
kind: ServiceProfile
metadata: {name: manual.%s.svc.cluster.local}
spec:
  routes:
  - name: ok
    condition: {pathRegex: "/api/.*"}
    timeout: 1s
  - name: broken
    condition: {pathRegex: "/api/(unclosed"}
`, ns))
	got, err := p.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Routes) != 1 || got.Routes[0].MetricsLabels["route"] != "ok" || got.Routes[0].Timeout.AsDuration() != time.Second {
		t.Fatalf("profile routes = %v", got.Routes)
	}
	select {
	case ev := <-rec.Events:
		if !strings.Contains(ev, "InvalidRoute") || !strings.Contains(ev, "pathRegex") {
			t.Errorf("event = %q", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no InvalidRoute event")
	}

	if err := f.Client.CoreV1().Services(ns).Delete(framework.Context(t, time.Minute), "manual", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	v.waitFor(t, nil, false, time.Second)
}

// TestDestinationRollout follows a Deployment through a rollout: the stream
// tracks the ready pods, and no endpoint outlives its pod by more than a second.
func TestDestinationRollout(t *testing.T) {
	f := framework.New(t)
	ns := f.NewNamespace(t, "dst-roll", nil)
	c, _ := startDestination(t, f)
	f.Apply(t, ns, fmt.Sprintf(echoApp, f.Image("testapp")))
	f.WaitRollout(t, ns, "deployment/echo", 2*time.Minute)

	readyIPs := func() []string {
		pods := f.DeploymentPods(t, ns, "echo")
		var ips []string
		for _, p := range pods {
			if p.DeletionTimestamp == nil && framework.PodReady(&p) {
				ips = append(ips, p.Status.PodIP)
			}
		}
		return ips
	}
	v := watchEndpoints(t, c, "echo."+ns+".svc.cluster.local:80")
	v.waitFor(t, readyIPs(), true, 5*time.Second)

	// Record when each pod is deleted from the API.
	ctx := framework.Context(t, 5*time.Minute)
	w, err := f.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	deleted := map[string]time.Time{}
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Deleted && p.Status.PodIP != "" {
				mu.Lock()
				deleted[p.Status.PodIP] = time.Now()
				mu.Unlock()
			}
		}
	}()
	defer w.Stop()

	for _, step := range []struct{ name, kubectl string }{
		{"scale up", "scale deployment/echo --replicas=3"},
		{"rollout restart", "rollout restart deployment/echo"},
		{"scale down", "scale deployment/echo --replicas=1"},
	} {
		t.Run(step.name, func(t *testing.T) {
			r := f.RunKubectl(ctx, "", append([]string{"-n", ns}, strings.Fields(step.kubectl)...)...)
			if r.Err != nil {
				t.Fatalf("kubectl %s: %v\n%s", step.kubectl, r.Err, r.Stderr)
			}
			time.Sleep(time.Second) // let the controller observe the change
			f.WaitRollout(t, ns, "deployment/echo", 3*time.Minute)
			// Wait for the old pods to be gone, then for the stream to match.
			f.WaitFor(t, "old pods gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
				pods, err := f.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
				if err != nil {
					return false, err
				}
				n := 0
				for _, p := range pods.Items {
					if p.DeletionTimestamp != nil {
						n++
					}
				}
				return n == 0, nil
			})
			v.waitFor(t, readyIPs(), true, 2*time.Second)
		})
	}

	mu.Lock()
	defer mu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(deleted) == 0 {
		t.Fatal("no pod was deleted during the rollout")
	}
	for ip, gone := range deleted {
		if _, still := v.addrs[ip]; still {
			t.Errorf("endpoint %s is still served after its pod was deleted at %s", ip, gone.Format(time.RFC3339Nano))
			continue
		}
		removed, ok := v.removed[ip]
		if !ok {
			continue // never served (deleted before it became ready)
		}
		if late := removed.Sub(gone); late > time.Second {
			t.Errorf("endpoint %s outlived its pod by %s", ip, late)
		} else {
			t.Logf("endpoint %s removed %s before its pod was deleted", ip, gone.Sub(removed).Round(time.Millisecond))
		}
	}
}

// TestDestinationInCluster asks the installed destination service, through
// `mesh diagnostics endpoints`, for a Deployment in an injected namespace:
// meshed pods carry their identity and the h2 hint.
func TestDestinationInCluster(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.RequireMesh(t, "diagnostics", "endpoints")
	checkControlPlaneEndpoints(t, f)
	checkInClusterEndpoints(t, f)
}

// checkControlPlaneEndpoints: the control-plane pods are meshed (the chart
// renders their proxy), so the identity service's endpoints carry its identity.
func checkControlPlaneEndpoints(t *testing.T, f *framework.Framework) {
	ns := framework.ControlPlaneNamespace
	out := f.MeshCmd(t, "diagnostics", "endpoints", "conduit-identity."+ns+".svc.cluster.local:8080", "-o", "json")
	var got struct {
		Endpoints []struct{ Identity, ProtocolHint string } `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	want := "conduit-identity." + ns + ".serviceaccount.identity." + ns + ".cluster.local"
	if len(got.Endpoints) == 0 {
		t.Fatalf("no endpoints for the identity service: %s", out)
	}
	for _, e := range got.Endpoints {
		if e.Identity != want || e.ProtocolHint != "h2" {
			t.Errorf("identity endpoint: identity %q hint %q, want %q h2", e.Identity, e.ProtocolHint, want)
		}
	}
}

func checkInClusterEndpoints(t *testing.T, f *framework.Framework) {
	// The injector reads the namespace's annotation: the pods are meshed,
	// so their endpoints must carry an identity and the h2 hint.
	ns := meshedNamespace(t, f, "dst-mesh")
	// The injector must be up, else (failurePolicy Ignore) the pods would be admitted without a proxy.
	f.WaitPodsReady(t, framework.ControlPlaneNamespace, "conduit.dev/control-plane-component=injector", 1, 2*time.Minute)
	f.Apply(t, ns, fmt.Sprintf(echoApp, f.Image("testapp")))
	f.WaitRollout(t, ns, "deployment/echo", 3*time.Minute)
	pods := f.DeploymentPods(t, ns, "echo")
	want := map[string]corev1.Pod{}
	for _, p := range pods {
		if p.DeletionTimestamp == nil && framework.PodReady(&p) {
			if !injected(&p) {
				t.Fatalf("pod %s in a namespace annotated conduit.dev/inject=enabled was not injected", p.Name)
			}
			want[p.Status.PodIP] = p
		}
	}
	auth := "echo." + ns + ".svc.cluster.local:80"
	var got struct {
		Exists    bool `json:"exists"`
		Endpoints []struct {
			IP, Pod, Identity, ProtocolHint string
			Port                            uint32
		} `json:"endpoints"`
	}
	// The stream may briefly lag the rollout: retry until the sets agree.
	f.WaitFor(t, "mesh diagnostics endpoints "+auth+" lists the ready pods", time.Minute, func(ctx context.Context) (bool, error) {
		r := f.RunMesh(ctx, "diagnostics", "endpoints", auth, "-o", "json")
		if r.Err != nil {
			return false, fmt.Errorf("%v: %s", r.Err, r.Stderr)
		}
		if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
			return false, fmt.Errorf("decode %q: %w", r.Stdout, err)
		}
		if !got.Exists || len(got.Endpoints) != len(want) {
			return false, nil
		}
		for _, e := range got.Endpoints {
			if _, ok := want[e.IP]; !ok {
				return false, nil
			}
		}
		return true, nil
	})
	for _, e := range got.Endpoints {
		p := want[e.IP]
		if e.Pod != p.Name || e.Port != 8080 {
			t.Errorf("endpoint %s: pod %q port %d, want %q 8080", e.IP, e.Pod, e.Port, p.Name)
		}
		meshed := p.Labels["conduit.dev/control-plane-ns"] != ""
		wantID := ""
		wantHint := ""
		if meshed {
			sa := p.Spec.ServiceAccountName
			if sa == "" {
				sa = "default"
			}
			wantID = sa + "." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
			wantHint = "h2"
		}
		t.Logf("endpoint %s pod %s meshed=%t identity=%q hint=%q", e.IP, e.Pod, meshed, e.Identity, e.ProtocolHint)
		if e.Identity != wantID || e.ProtocolHint != wantHint {
			t.Errorf("endpoint %s (meshed %t): identity %q hint %q, want %q %q", e.IP, meshed, e.Identity, e.ProtocolHint, wantID, wantHint)
		}
	}
}

// statefulApp is a 2-replica StatefulSet behind a headless Service.
const statefulApp = `
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: %[1]s
        imagePullPolicy: IfNotPresent
        args: [serve, -addr, ":8080"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
`

// TestDestinationStatefulSet resolves a StatefulSet pod's DNS name to that
// pod, and follows it when the pod is recreated.
func TestDestinationStatefulSet(t *testing.T) {
	f := framework.New(t)
	ns := f.NewNamespace(t, "dst-sts", nil)
	c, _ := startDestination(t, f)
	f.Apply(t, ns, fmt.Sprintf(statefulApp, f.Image("testapp")))
	f.WaitRollout(t, ns, "statefulset/db", 3*time.Minute)
	ctx := framework.Context(t, 3*time.Minute)
	podIP := func(name string) string {
		p, err := f.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Status.PodIP
	}
	db0 := watchEndpoints(t, c, "db-0.db."+ns+".svc.cluster.local:8080")
	db0.waitFor(t, []string{podIP("db-0")}, true, 5*time.Second)
	all := watchEndpoints(t, c, "db."+ns+".svc.cluster.local:8080")
	all.waitFor(t, []string{podIP("db-0"), podIP("db-1")}, true, 5*time.Second)

	// Recreate db-0: its name follows the new pod.
	old := podIP("db-0")
	if err := f.Client.CoreV1().Pods(ns).Delete(ctx, "db-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.WaitFor(t, "db-0 recreated and ready", 2*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := f.Client.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return p.DeletionTimestamp == nil && framework.PodReady(p), nil
	})
	db0.waitFor(t, []string{podIP("db-0")}, true, 2*time.Second)
	t.Logf("db-0 moved from %s to %s", old, podIP("db-0"))
}
