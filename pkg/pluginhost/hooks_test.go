package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/core/injector"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// hookExt is a test extension whose hooks do what its fields say.
type hookExt struct {
	name  string
	calls atomic.Int32
	patch func(req *sdk.PodPatchRequest) ([]sdk.PatchOp, error)
	md    map[string]string
	fail  bool
}

func (e *hookExt) Info() sdk.Info { return sdk.Info{Name: e.name, Version: "1.0.0"} }

func (e *hookExt) PatchPod(ctx context.Context, req *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
	e.calls.Add(1)
	return e.patch(req)
}

func (e *hookExt) AnnotateEndpoints(_ context.Context, _ string, eps []sdk.Endpoint) (map[string]map[string]string, error) {
	e.calls.Add(1)
	if e.fail {
		return nil, errors.New("annotate failed")
	}
	out := map[string]map[string]string{}
	for _, ep := range eps {
		md := map[string]string{"pod": ep.PodName}
		for k, v := range e.md {
			md[k] = v
		}
		out[ep.Address] = md
	}
	return out, nil
}

// serveHooks serves ext's hooks on a loopback port and returns its address.
func serveHooks(t *testing.T, ext sdk.Extension) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sdk.ServeHooksListener(ctx, lis, ext) }()
	t.Cleanup(func() { cancel(); <-done })
	return lis.Addr().String()
}

type events struct {
	mu   sync.Mutex
	msgs []string
}

func (e *events) Warn(_ context.Context, _ *corev1.Pod, ns, reason, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.msgs = append(e.msgs, ns+" "+reason+" "+msg)
}

func annotate(key, value string) func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
	return func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
		return []sdk.PatchOp{{Op: "add", Path: "/metadata/annotations/" + sdk.EscapePointer(key), Value: value}}, nil
	}
}

func TestInjectorContributor(t *testing.T) {
	a := &hookExt{name: "a", patch: annotate("a.dev/on", "")}
	// b sees a's patch, since it is called with the pod a patched.
	b := &hookExt{name: "b", patch: func(req *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
		var pod corev1.Pod
		if err := json.Unmarshal(req.Pod, &pod); err != nil {
			return nil, err
		}
		if _, ok := pod.Annotations["a.dev/on"]; !ok || req.ProxyPath != "/spec/initContainers/1" || req.Namespace != "web" {
			return nil, errors.New("b did not get a's patch, the proxy path or the namespace")
		}
		return annotate("b.dev/saw-a", "true")(req)
	}}
	failing := &hookExt{name: "c-failing", patch: func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) { return nil, errors.New("boom") }}
	bad := &hookExt{name: "d-bad", patch: func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
		return []sdk.PatchOp{{Op: "remove", Path: "/metadata/labels/missing"}}, nil
	}}
	slow := &hookExt{name: "e-slow", patch: func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
		time.Sleep(500 * time.Millisecond)
		return annotate("e.dev/late", "x")(nil)
	}}
	var objs []*corev1.Namespace
	for _, e := range []*hookExt{a, b, failing, bad, slow} {
		objs = append(objs, extNamespace("conduit-"+e.name, e.name, "", map[string]string{AnnotationInjectorHook: serveHooks(t, e)}))
	}
	objs = append(objs, extNamespace("conduit-nohook", "nohook", "", nil))
	cs := fake.NewClientset()
	for _, ns := range objs {
		if _, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ev := &events{}
	reg := prometheus.NewRegistry()
	h := NewHooks(cs, HooksOptions{Timeout: 200 * time.Millisecond, Backoff: time.Hour, Events: ev, Registerer: reg})
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Annotations: map[string]string{"app": "web"}}}
	req := &injector.ContributionRequest{Pod: pod, Patched: pod, Namespace: "web", ProxyPath: "/spec/initContainers/1"}
	ops, err := InjectorContributor{Hooks: h}.Contribute(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(ops)
	want := `[{"op":"add","path":"/metadata/annotations/a.dev~1on","value":""},{"op":"add","path":"/metadata/annotations/b.dev~1saw-a","value":"true"}]`
	if string(got) != want {
		t.Errorf("ops %s\nwant %s", got, want)
	}
	if len(ev.msgs) != 3 || !strings.Contains(ev.msgs[0], "web ExtensionHookFailed extension c-failing") || !strings.Contains(ev.msgs[0], "boom") ||
		!strings.Contains(ev.msgs[1], "d-bad") || !strings.Contains(ev.msgs[1], "does not apply") || !strings.Contains(ev.msgs[2], "e-slow") {
		t.Errorf("events %q", ev.msgs)
	}
	for _, lbl := range [][3]string{{"a", "PatchPod", "OK"}, {"b", "PatchPod", "OK"}, {"c-failing", "PatchPod", "Unknown"}, {"d-bad", "PatchPod", "OK"}, {"e-slow", "PatchPod", "DeadlineExceeded"}} {
		if c := sampleCount(t, reg, "conduit_extension_hook_duration_seconds", map[string]string{"extension": lbl[0], "method": lbl[1], "code": lbl[2]}); c != 1 {
			t.Errorf("%v: %d calls measured, want 1", lbl, c)
		}
	}
	// A failed hook backs off: the next call skips it.
	calls := failing.calls.Load()
	if _, err := (InjectorContributor{Hooks: h}).Contribute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if failing.calls.Load() != calls {
		t.Errorf("the failed hook was called again during its backoff")
	}
	// Removing the annotation removes the hook.
	ns, _ := cs.CoreV1().Namespaces().Get(context.Background(), "conduit-a", metav1.GetOptions{})
	delete(ns.Annotations, AnnotationInjectorHook)
	if _, err := cs.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls = a.calls.Load()
	if _, err := (InjectorContributor{Hooks: h}).Contribute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if a.calls.Load() != calls {
		t.Errorf("a hook whose annotation was removed is still called")
	}
}

func TestInjectorContributorNoHooks(t *testing.T) {
	h := NewHooks(fake.NewClientset(), HooksOptions{})
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	ops, err := InjectorContributor{Hooks: h}.Contribute(context.Background(), &injector.ContributionRequest{Pod: pod, Patched: pod})
	if ops != nil || err != nil {
		t.Errorf("%v %v", ops, err)
	}
}

func TestEndpointAnnotator(t *testing.T) {
	x := &hookExt{name: "x", md: map[string]string{"zone": "x-zone", "team": "x"}}
	y := &hookExt{name: "y", md: map[string]string{"team": "y", "tier": "gold"}}
	broken := &hookExt{name: "z", fail: true}
	cs := fake.NewClientset(
		extNamespace("conduit-x", "x", "", map[string]string{AnnotationDestinationHook: serveHooks(t, x)}),
		extNamespace("conduit-y", "y", "", map[string]string{AnnotationDestinationHook: serveHooks(t, y)}),
		extNamespace("conduit-z", "z", "", map[string]string{AnnotationDestinationHook: serveHooks(t, broken)}),
	)
	h := NewHooks(cs, HooksOptions{Backoff: time.Millisecond})
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := &EndpointAnnotator{Hooks: h}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "web", UID: "u1", ResourceVersion: "7"}}
	newAddr := func() *destinationv1.WeightedAddr {
		return &destinationv1.WeightedAddr{Addr: &destinationv1.TcpAddress{Ip: "10.0.0.1", Port: 8080}, Metadata: map[string]string{"zone": "core"}}
	}
	addr := newAddr()
	a.Annotate(context.Background(), addr, pod)
	want := map[string]string{"zone": "core", "team": "x", "tier": "gold", "pod": "web-0"}
	if len(addr.Metadata) != len(want) {
		t.Fatalf("metadata %v, want %v", addr.Metadata, want)
	}
	for k, v := range want {
		if addr.Metadata[k] != v {
			t.Errorf("metadata %v, want %v", addr.Metadata, want)
		}
	}
	// A result with a failure is not cached. Without the broken hook, the
	// result is cached: the same pod version does not call the hooks again.
	cs.CoreV1().Namespaces().Delete(context.Background(), "conduit-z", metav1.DeleteOptions{})
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.Annotate(context.Background(), newAddr(), pod)
	n := x.calls.Load()
	addr = newAddr()
	a.Annotate(context.Background(), addr, pod)
	if x.calls.Load() != n || addr.Metadata["tier"] != "gold" {
		t.Errorf("cached result not used: calls %d→%d, metadata %v", n, x.calls.Load(), addr.Metadata)
	}
	// A new pod version asks again.
	pod.ResourceVersion = "8"
	a.Annotate(context.Background(), newAddr(), pod)
	if x.calls.Load() != n+1 {
		t.Errorf("a new pod version did not call the hook")
	}
}

// sampleCount returns the number of observations of the histogram series
// of name with labels.
func sampleCount(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m.GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// TestRunPicksUpNewExtensionAtOnce: an extension installed after the hooks
// started is called within a moment, not at the next periodic refresh.
func TestRunPicksUpNewExtensionAtOnce(t *testing.T) {
	cs := fake.NewClientset()
	h := NewHooks(cs, HooksOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { h.Run(ctx, time.Hour); close(done) }()
	if got := h.snapshot(false); len(got) != 0 {
		t.Fatalf("hooks before any extension: %d", len(got))
	}
	ns := extNamespace("conduit-late", "late", "", map[string]string{AnnotationInjectorHook: "late.conduit-late.svc:8089"})
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(h.snapshot(false)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the new extension's injector hook was not picked up within 5s (Run's interval is 1h)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.snapshot(false)[0]; got.ext != "late" || got.addr != "late.conduit-late.svc:8089" {
		t.Errorf("hook target %s at %s", got.ext, got.addr)
	}
	cancel()
	<-done
	if got := h.snapshot(false); len(got) != 0 {
		t.Errorf("hooks after Run returned: %d, want none", len(got))
	}
}

// TestHookRetriesUnavailableOnce: a hook that answers Unavailable once (an
// extension pod or a proxy just restarted) is retried within the call, and
// its patch applies; it is not put in backoff.
func TestHookRetriesUnavailableOnce(t *testing.T) {
	flaky := &hookExt{name: "flaky"}
	flaky.patch = func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
		if flaky.calls.Load() == 1 {
			return nil, status.Error(codes.Unavailable, "warming up")
		}
		return []sdk.PatchOp{{Op: "add", Path: "/metadata/annotations/flaky.dev~1ok", Value: "yes"}}, nil
	}
	cs := fake.NewClientset(extNamespace("conduit-flaky", "flaky", "", map[string]string{AnnotationInjectorHook: serveHooks(t, flaky)}))
	h := NewHooks(cs, HooksOptions{Timeout: 2 * time.Second, Backoff: time.Hour})
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Annotations: map[string]string{"app": "web"}}}
	req := &injector.ContributionRequest{Pod: pod, Patched: pod, Namespace: "web", ProxyPath: "/spec/initContainers/1"}
	for i := 0; i < 2; i++ {
		ops, err := InjectorContributor{Hooks: h}.Contribute(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(ops); !strings.Contains(string(b), "flaky.dev~1ok") {
			t.Fatalf("call %d: ops %s, want the flaky hook's patch after its retry", i, b)
		}
	}
	if got := flaky.calls.Load(); got != 3 {
		t.Errorf("hook calls = %d, want 3 (one retried call, then one call)", got)
	}
}
