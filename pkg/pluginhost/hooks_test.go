package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/core/injector"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
	sum := selfDigest(t)
	names := []string{"a", "b", "c-failing", "d-bad", "e-slow"}
	cs := fake.NewClientset(allowConfigMap(sum, names...))
	for _, name := range names {
		ns := extNamespace("conduit-"+name, name, "", map[string]string{AnnotationInjectorHook: distribute(t, name)})
		if _, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), extNamespace("conduit-nohook", "nohook", "", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	reg := prometheus.NewRegistry()
	h := newTestHooks(t, cs, HooksOptions{Timeout: 200 * time.Millisecond, Backoff: time.Hour, Events: ev, Registerer: reg})
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
	if v := gaugeValue(t, reg, "conduit_extension_hook_plugin", map[string]string{"extension": "a", "state": "running"}); v != 1 {
		t.Errorf("plugin state of a: running = %v, want 1", v)
	}
	// A failed hook backs off: the next call skips it.
	if _, err := (InjectorContributor{Hooks: h}).Contribute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if c := sampleCount(t, reg, "conduit_extension_hook_duration_seconds", map[string]string{"extension": "c-failing"}); c != 1 {
		t.Errorf("the failed hook was called again during its backoff (%d calls)", c)
	}
	// Removing the annotation removes the hook, and stops its plugin.
	aPlugin := h.targets["a"].plugin
	ns, _ := cs.CoreV1().Namespaces().Get(context.Background(), "conduit-a", metav1.GetOptions{})
	delete(ns.Annotations, AnnotationInjectorHook)
	if _, err := cs.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := sampleCount(t, reg, "conduit_extension_hook_duration_seconds", map[string]string{"extension": "a"})
	if _, err := (InjectorContributor{Hooks: h}).Contribute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if c := sampleCount(t, reg, "conduit_extension_hook_duration_seconds", map[string]string{"extension": "a"}); c != calls {
		t.Errorf("a hook whose annotation was removed is still called")
	}
	if !aPlugin.Exited() {
		t.Errorf("the plugin of a hook whose annotation was removed still runs")
	}
}

// TestAllowList: a hook runs only when the allow-list names its extension
// with the digest of the binary it hands out; anything else is refused,
// reported in the gauge, and never run.
func TestAllowList(t *testing.T) {
	sum := selfDigest(t)
	other := strings.Repeat("ab", 32)
	cs := fake.NewClientset(extNamespace("conduit-a", "a", "", map[string]string{AnnotationInjectorHook: distribute(t, "a")}))
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	var logs bytes.Buffer
	h := newTestHooks(t, cs, HooksOptions{Registerer: reg, PluginDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	// stateLines counts the lines logged about extension a's state since
	// the last call.
	stateLines := func() int {
		n := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "extension=a state=") {
				n++
			}
		}
		logs.Reset()
		return n
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Annotations: map[string]string{"app": "web"}}}
	req := &injector.ContributionRequest{Pod: pod, Patched: pod, Namespace: "web", ProxyPath: "/spec/initContainers/1"}
	patched := func() bool {
		t.Helper()
		if err := h.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		ops, err := InjectorContributor{Hooks: h}.Contribute(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return len(ops) == 1
	}
	// The gauge names the allow-list entry (digest, failure policy) its
	// state is about, and keeps one series per state.
	state := func(s, sha, policy string) float64 {
		if n := len(series(t, reg, "conduit_extension_hook_plugin", map[string]string{"extension": "a"})); n != 4 {
			t.Errorf("%d series for extension a, want one per state (4)", n)
		}
		return gaugeValue(t, reg, "conduit_extension_hook_plugin", map[string]string{"extension": "a", "state": s, "sha256": sha, "failure_policy": policy})
	}
	failClosed := AllowListConfigMap(testControlPlane, AllowList{"a": {SHA256: sum, FailurePolicy: Fail}})
	for _, tc := range []struct {
		name  string
		cm    *corev1.ConfigMap
		want  bool
		state string
		sha   string
		// policy: the failure policy the state is under
		policy string
		// logged: lines about the state (one per change of state, digest
		// or policy)
		logged int
	}{
		{"no allow-list", nil, false, StateNotAllowed, "", "", 1},
		{"not in the allow-list", allowConfigMap(sum, "b"), false, StateNotAllowed, "", "", 0},
		{"another digest", allowConfigMap(other, "a"), false, StateRefused, other, "Ignore", 1},
		{"an invalid digest", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: AllowListName, Namespace: testControlPlane},
			Data: map[string]string{"a": "sha256:xyz"}}, false, StateNotAllowed, "", "", 1},
		{"allowed", allowConfigMap(sum, "a"), true, StateRunning, sum, "Ignore", 1},
		{"allowed, failure policy Fail", failClosed, true, StateRunning, sum, "Fail", 1},
		{"allowed, with a new digest", allowConfigMap(other, "a"), false, StateRefused, other, "Ignore", 1},
		{"allowed again", allowConfigMap(sum, "a"), true, StateRunning, sum, "Ignore", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cm != nil {
				setAllowList(t, cs, tc.cm)
			}
			if got := patched(); got != tc.want {
				t.Errorf("hook ran = %v, want %v", got, tc.want)
			}
			if v := state(tc.state, tc.sha, tc.policy); v != 1 {
				t.Errorf("state %s (sha256 %q, failure policy %q) = %v, want 1", tc.state, tc.sha, tc.policy, v)
			}
			if n := stateLines(); n != tc.logged {
				t.Errorf("%d lines logged about the state, want %d", n, tc.logged)
			}
		})
	}
	// A binary changed on disk after its fetch is refused by go-plugin's
	// SecureConfig before it runs.
	h.Close()
	path := filepath.Join(dir, sum[:16], BinaryPrefix+"a")
	if err := os.Chmod(path, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("tampered"))
	f.Close()
	if patched() {
		t.Error("a tampered binary ran")
	}
	if v := state(StateFailed, sum, "Ignore"); v != 1 {
		t.Errorf("state failed = %v, want 1 after a tampered binary", v)
	}
}

// TestCrashedPluginRestarts: a plugin that dies during a call fails that
// call only (the pod is admitted without its patch); the next refresh, which
// the crash triggers, starts it again.
func TestCrashedPluginRestarts(t *testing.T) {
	sum := selfDigest(t)
	cs := fake.NewClientset(allowConfigMap(sum, "crashy"),
		extNamespace("conduit-crashy", "crashy", "", map[string]string{AnnotationInjectorHook: distribute(t, "crashy")}))
	ev := &events{}
	h := newTestHooks(t, cs, HooksOptions{Backoff: time.Millisecond, Events: ev, Timeout: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	go h.Run(ctx, time.Hour)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Annotations: map[string]string{"app": "web"}}}
	req := &injector.ContributionRequest{Pod: pod, Patched: pod, Namespace: "web", ProxyPath: "/spec/initContainers/1"}
	ops, err := InjectorContributor{Hooks: h}.Contribute(ctx, req)
	if err != nil || len(ops) != 0 {
		t.Fatalf("call that crashed the plugin: ops %v, err %v", ops, err)
	}
	if len(ev.msgs) != 1 || !strings.Contains(ev.msgs[0], "exited") {
		t.Errorf("events %q, want one saying the plugin exited", ev.msgs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ops, _ := InjectorContributor{Hooks: h}.Contribute(ctx, req)
		if len(ops) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the crashed plugin was not restarted within 10s (Run's interval is 1h)")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestInjectorContributorNoHooks(t *testing.T) {
	h := newTestHooks(t, fake.NewClientset(), HooksOptions{})
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
	cs := fake.NewClientset(allowConfigMap(selfDigest(t), "x", "y", "z"),
		extNamespace("conduit-x", "x", "", map[string]string{AnnotationDestinationHook: distribute(t, "x")}),
		extNamespace("conduit-y", "y", "", map[string]string{AnnotationDestinationHook: distribute(t, "y")}),
		extNamespace("conduit-z", "z", "", map[string]string{AnnotationDestinationHook: distribute(t, "z")}),
	)
	reg := prometheus.NewRegistry()
	h := newTestHooks(t, cs, HooksOptions{Backoff: time.Millisecond, Registerer: reg})
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	xCalls := func() uint64 {
		return sampleCount(t, reg, "conduit_extension_hook_duration_seconds", map[string]string{"extension": "x"})
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
	n := xCalls()
	addr = newAddr()
	a.Annotate(context.Background(), addr, pod)
	if xCalls() != n || addr.Metadata["tier"] != "gold" {
		t.Errorf("cached result not used: calls %d→%d, metadata %v", n, xCalls(), addr.Metadata)
	}
	// A new pod version asks again.
	pod.ResourceVersion = "8"
	a.Annotate(context.Background(), newAddr(), pod)
	if xCalls() != n+1 {
		t.Errorf("a new pod version did not call the hook")
	}
}

// series returns the series of the metric name whose labels include labels.
func series(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.Metric
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
			out = append(out, m)
		}
	}
	return out
}

// sampleCount is the number of observations of the histogram name over the
// series with labels.
func sampleCount(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) uint64 {
	t.Helper()
	var n uint64
	for _, m := range series(t, reg, name, labels) {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

// gaugeValue is the value of the gauge name with labels (0 if absent).
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	ms := series(t, reg, name, labels)
	if len(ms) != 1 {
		return 0
	}
	return ms[0].GetGauge().GetValue()
}

// TestRunPicksUpNewExtensionAtOnce: an extension installed after the hooks
// started is called within a moment, not at the next periodic refresh.
func TestRunPicksUpNewExtensionAtOnce(t *testing.T) {
	cs := fake.NewClientset()
	h := newTestHooks(t, cs, HooksOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { h.Run(ctx, time.Hour); close(done) }()
	if got := h.snapshot(false); len(got) != 0 {
		t.Fatalf("hooks before any extension: %d", len(got))
	}
	addr := distribute(t, "late")
	ns := extNamespace("conduit-late", "late", "", map[string]string{AnnotationInjectorHook: addr})
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := h.snapshot(false); len(got) != 0 {
		t.Fatalf("an extension missing from the allow-list runs: %d hooks", len(got))
	}
	// Allowing it (mesh extensions allow late) starts it at once.
	setAllowList(t, cs, allowConfigMap(selfDigest(t), "late"))
	deadline := time.Now().Add(10 * time.Second)
	for len(h.snapshot(false)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the allowed extension's injector hook was not picked up within 10s (Run's interval is 1h)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := h.snapshot(false)[0]
	if got.ext != "late" || got.addr != addr || got.plugin.Info.Name != "late" {
		t.Errorf("hook target %s at %s", got.ext, got.addr)
	}
	cancel()
	<-done
	if len(h.snapshot(false)) != 0 || !got.plugin.Exited() {
		t.Errorf("after Run returned: %d hooks, plugin exited %v; want none, true", len(h.snapshot(false)), got.plugin.Exited())
	}
}

// TestHookRetriesUnavailableOnce: a hook that answers Unavailable once (an
// extension pod or a proxy just restarted) is retried within the call, and
// its patch applies; it is not put in backoff.
func TestHookRetriesUnavailableOnce(t *testing.T) {
	cs := fake.NewClientset(allowConfigMap(selfDigest(t), "flaky"),
		extNamespace("conduit-flaky", "flaky", "", map[string]string{AnnotationInjectorHook: distribute(t, "flaky")}))
	reg := prometheus.NewRegistry()
	h := newTestHooks(t, cs, HooksOptions{Timeout: 2 * time.Second, Backoff: time.Hour, Registerer: reg})
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
	// Two measured calls, both OK: the first one's Unavailable was retried
	// within it, and did not put the hook in backoff.
	if c := sampleCount(t, reg, "conduit_extension_hook_duration_seconds", map[string]string{"extension": "flaky", "code": "OK"}); c != 2 {
		t.Errorf("OK calls = %d, want 2", c)
	}
}

// TestFailurePolicyFail: an extension allowed with failurePolicy=Fail
// refuses the pod when its hook fails or its plugin does not run; the
// others' failures are still ignored.
func TestFailurePolicyFail(t *testing.T) {
	sum := selfDigest(t)
	dead := deadAddr(t)
	cm := allowConfigMap(sum, "a", "c-failing")
	cs := fake.NewClientset(cm,
		extNamespace("conduit-a", "a", "", map[string]string{AnnotationInjectorHook: distribute(t, "a")}),
		extNamespace("conduit-c-failing", "c-failing", "", map[string]string{AnnotationInjectorHook: distribute(t, "c-failing")}),
		extNamespace("conduit-gone", "gone", "", map[string]string{AnnotationInjectorHook: dead}),
	)
	h := newTestHooks(t, cs, HooksOptions{Backoff: time.Millisecond, Events: &events{}})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Annotations: map[string]string{"app": "web"}}}
	req := &injector.ContributionRequest{Pod: pod, Patched: pod, Namespace: "web", ProxyPath: "/spec/initContainers/1"}
	contribute := func(t *testing.T, policies map[string]FailurePolicy) ([]injector.JSONPatchOp, error) {
		t.Helper()
		for name, p := range policies {
			e, err := ParseAllowEntry(cm.Data[name])
			if err != nil {
				t.Fatal(err)
			}
			e.FailurePolicy = p
			cm.Data[name] = e.String()
		}
		setAllowList(t, cs, cm)
		if err := h.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // past the failed hooks' backoff
		return InjectorContributor{Hooks: h}.Contribute(context.Background(), req)
	}
	// Ignore (the default): c-failing's failure is left out.
	if ops, err := contribute(t, nil); err != nil || len(ops) != 1 {
		t.Fatalf("all Ignore: ops %v, err %v; want a's patch", ops, err)
	}
	// Fail on a hook that works: nothing changes.
	if ops, err := contribute(t, map[string]FailurePolicy{"a": Fail}); err != nil || len(ops) != 1 {
		t.Fatalf("a Fail: ops %v, err %v; want a's patch", ops, err)
	}
	// Fail on the failing hook: the pod is refused, saying which and why.
	_, err := contribute(t, map[string]FailurePolicy{"c-failing": Fail})
	if !errors.Is(err, injector.ErrContributionRequired) || !strings.Contains(err.Error(), "c-failing") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("c-failing Fail: %v; want a refusal naming c-failing and its error", err)
	}
	// Fail on an extension whose plugin cannot be fetched: refused too.
	cm.Data["c-failing"] = AllowEntry{SHA256: sum}.String()
	cm.Data["gone"] = AllowEntry{SHA256: sum, FailurePolicy: Fail}.String()
	_, err = contribute(t, nil)
	if !errors.Is(err, injector.ErrContributionRequired) || !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "not running") {
		t.Errorf("gone Fail: %v; want a refusal saying its hook is not running", err)
	}
}

func TestParseAllowEntry(t *testing.T) {
	d := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in   string
		want AllowEntry
		err  string
	}{
		{"sha256:" + d, AllowEntry{SHA256: d, FailurePolicy: Ignore}, ""},
		{strings.ToUpper(d), AllowEntry{SHA256: d, FailurePolicy: Ignore}, ""},
		{"sha256:" + d + " failurePolicy=Fail", AllowEntry{SHA256: d, FailurePolicy: Fail}, ""},
		{"sha256:" + d + " failurePolicy=ignore", AllowEntry{SHA256: d, FailurePolicy: Ignore}, ""},
		{"sha256:" + d + " failurePolicy=Sometimes", AllowEntry{}, "accepted: Ignore, Fail"},
		{"sha256:" + d + " retries=3", AllowEntry{}, "unknown option"},
		{"sha256:abc", AllowEntry{}, "not a SHA-256 digest"},
		{"", AllowEntry{}, "empty entry"},
	} {
		got, err := ParseAllowEntry(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if back, err := ParseAllowEntry(got.String()); err != nil || back != got {
			t.Errorf("%q: String() %q does not parse back: %+v, %v", tc.in, got.String(), back, err)
		}
	}
}
