package cmd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/cli/healthcheck"
	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const (
	waitDigest = "1111111111111111111111111111111111111111111111111111111111111111"
	oldDigest  = "2222222222222222222222222222222222222222222222222222222222222222"
)

// hookGauge is the exposition of conduit_extension_hook_plugin with ext in
// state for digest sha under failure policy Ignore (the default; none when
// sha is ""), and another extension running, which must not count.
func hookGauge(ext, state, sha string) string {
	policy := "Ignore"
	if sha == "" {
		policy = ""
	}
	return hookGaugeOf(ext, state, sha, `,failure_policy="`+policy+`"`)
}

// hookGaugeOf is hookGauge with the failure_policy label as given: "" for
// a control plane that does not report it.
func hookGaugeOf(ext, state, sha, policyLabel string) string {
	var b strings.Builder
	b.WriteString("# HELP conduit_extension_hook_plugin state\n# TYPE conduit_extension_hook_plugin gauge\n")
	b.WriteString(`conduit_extension_hook_plugin{extension="other",failure_policy="Fail",sha256="",state="running"} 1` + "\n")
	for _, st := range []string{pluginhost.StateRunning, pluginhost.StateNotAllowed, pluginhost.StateRefused, pluginhost.StateFailed} {
		v := 0
		if st == state {
			v = 1
		}
		fmt.Fprintf(&b, "conduit_extension_hook_plugin{extension=%q%s,sha256=%q,state=%q} %d\n", ext, policyLabel, sha, st, v)
	}
	return b.String()
}

func controlPlanePod(component, name string, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "conduit", Labels: map[string]string{componentLabel: component}},
		Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

// serveHookStates points portForward at fake admin servers, one per pod:
// the nth read of a pod's /metrics gets states[pod][min(n, last)].
func serveHookStates(t *testing.T, states map[string][]string) (reads func(pod string) int) {
	t.Helper()
	var mu sync.Mutex
	count := map[string]int{}
	servers := map[string]string{}
	for pod, seq := range states {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/metrics" {
				http.NotFound(w, r)
				return
			}
			mu.Lock()
			n := count[pod]
			count[pod]++
			mu.Unlock()
			_, _ = w.Write([]byte(seq[min(n, len(seq)-1)]))
		}))
		t.Cleanup(srv.Close)
		servers[pod] = strings.TrimPrefix(srv.URL, "http://")
	}
	old, oldPoll := portForward, hookWaitPoll
	portForward = func(_ context.Context, _ *Kube, ns, pod string, port int) (string, func(), error) {
		addr, ok := servers[pod]
		if ns != "conduit" || !ok {
			return "", nil, fmt.Errorf("no port-forward to %s/%s", ns, pod)
		}
		if want := controllerAdminPorts[strings.Split(pod, "-")[0]]; port != want {
			t.Errorf("port-forward to %s:%d, want its admin port %d", pod, port, want)
		}
		return addr, func() {}, nil
	}
	hookWaitPoll = 10 * time.Millisecond
	t.Cleanup(func() { portForward, hookWaitPoll = old, oldPoll })
	return func(pod string) int {
		mu.Lock()
		defer mu.Unlock()
		return count[pod]
	}
}

// TestExtensionsAllowWaits: allow returns once every ready pod of the
// components that call the extension's hooks runs the allowed digest; it
// fails at once on a refusal of that digest, and at the timeout naming what
// each pod reports; disallow waits for not-allowed.
func TestExtensionsAllowWaits(t *testing.T) {
	extNS := func(annotations map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz",
			Labels: map[string]string{pluginhost.LabelExtension: "viz"}, Annotations: annotations}}
	}
	injectorOnly := extNS(map[string]string{pluginhost.AnnotationInjectorHook: "viz-hooks.conduit-viz.svc:8089"})
	both := extNS(map[string]string{pluginhost.AnnotationInjectorHook: "viz-hooks.conduit-viz.svc:8089",
		pluginhost.AnnotationDestinationHook: "viz-hooks.conduit-viz.svc:8089"})
	allowed := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: pluginhost.AllowListName, Namespace: "conduit"},
		Data: map[string]string{"viz": "sha256:" + waitDigest}}
	running := hookGauge("viz", pluginhost.StateRunning, waitDigest)
	tests := []struct {
		name    string
		objs    []runtime.Object
		args    []string
		states  map[string][]string
		wantOut []string
		wantErr []string
		// reads: pods whose metrics must (true) or must not (false) be read
		reads map[string]bool
		// minReads: pods whose metrics must be read at least this often
		minReads map[string]int
	}{
		{
			name:    "running at once",
			objs:    []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			states:  map[string][]string{"injector-a": {running}},
			wantOut: []string{"Extension viz allowed (sha256:" + waitDigest, "runs its hooks from now on (injector-a)"},
		},
		{
			// The gauge still shows the old digest's plugin running, then
			// no state, then the new one: only the last is done.
			name: "the old digest running, then the new one",
			objs: []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true), controlPlanePod("injector", "injector-b", true)},
			states: map[string][]string{
				"injector-a": {hookGauge("viz", pluginhost.StateRunning, oldDigest), hookGauge("viz", pluginhost.StateFailed, waitDigest), running},
				"injector-b": {running},
			},
			wantOut:  []string{"runs its hooks from now on (injector-a, injector-b)"},
			minReads: map[string]int{"injector-a": 3},
		},
		{
			name: "injector and destination",
			// identity runs no hooks; a pod that is not ready is skipped.
			objs: []runtime.Object{both, controlPlanePod("injector", "injector-a", true), controlPlanePod("destination", "destination-a", true),
				controlPlanePod("identity", "identity-a", true), controlPlanePod("destination", "destination-b", false)},
			args:     []string{"--wait", "5s"},
			states:   map[string][]string{"injector-a": {running}, "destination-a": {"", running}},
			wantOut:  []string{"(injector-a, destination-a)"},
			minReads: map[string]int{"destination-a": 2},
		},
		{
			name: "a pod not ready is not waited for",
			objs: []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true), controlPlanePod("injector", "injector-b", false)},
			states: map[string][]string{"injector-a": {running},
				"injector-b": {hookGauge("viz", pluginhost.StateFailed, waitDigest)}},
			wantOut: []string{"(injector-a)"},
			reads:   map[string]bool{"injector-b": false},
		},
		{
			name:    "refused",
			objs:    []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			states:  map[string][]string{"injector-a": {hookGauge("viz", pluginhost.StateRefused, waitDigest)}},
			wantErr: []string{"viz is in the allow-list, but the control plane does not run its hooks", "injector-a refused the binary", "kubectl -n conduit logs deploy/conduit-injector -c injector"},
		},
		{
			// A refusal of the digest allowed before is what the gauge says
			// until the injector reads the new allow-list: not an error.
			name:     "an earlier digest refused",
			objs:     []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			states:   map[string][]string{"injector-a": {hookGauge("viz", pluginhost.StateRefused, oldDigest), running}},
			wantOut:  []string{"(injector-a)"},
			minReads: map[string]int{"injector-a": 2},
		},
		{
			// A new failure policy alone: the gauge shows the digest running
			// under the old one until the injector reads the new entry.
			name: "failure policy Fail, running under Ignore, then Fail",
			objs: []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			args: []string{"--failure-policy", "Fail"},
			states: map[string][]string{"injector-a": {running,
				hookGaugeOf("viz", pluginhost.StateRunning, waitDigest, `,failure_policy="Fail"`)}},
			wantOut:  []string{"failure policy Fail).", "runs its hooks from now on (injector-a)"},
			minReads: map[string]int{"injector-a": 2},
		},
		{
			name:    "failure policy Fail, still Ignore at the timeout",
			objs:    []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			args:    []string{"--failure-policy", "Fail", "--wait", "200ms"},
			states:  map[string][]string{"injector-a": {running}},
			wantErr: []string{"not done within 200ms: injector-a runs it under failure policy Ignore, not Fail yet"},
		},
		{
			// The refusal under Ignore is the old entry's: not an error
			// until the same refusal is under Fail.
			name: "failure policy Fail, refused under Ignore, then Fail",
			objs: []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			args: []string{"--failure-policy", "Fail"},
			states: map[string][]string{"injector-a": {hookGauge("viz", pluginhost.StateRefused, waitDigest),
				hookGaugeOf("viz", pluginhost.StateRefused, waitDigest, `,failure_policy="Fail"`)}},
			wantErr:  []string{"injector-a refused the binary"},
			minReads: map[string]int{"injector-a": 2},
		},
		{
			// A control plane that does not report the policy: the digest
			// alone decides.
			name:    "failure policy Fail, a control plane without the label",
			objs:    []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			args:    []string{"--failure-policy", "Fail"},
			states:  map[string][]string{"injector-a": {hookGaugeOf("viz", pluginhost.StateRunning, waitDigest, "")}},
			wantOut: []string{"runs its hooks from now on (injector-a)"},
		},
		{
			name:    "failing until the timeout",
			objs:    []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			args:    []string{"--wait", "200ms"},
			states:  map[string][]string{"injector-a": {hookGauge("viz", pluginhost.StateFailed, waitDigest)}},
			wantErr: []string{"not done within 200ms: injector-a (for sha256:111111111111…): failed (its hook binary could not be fetched or started yet: "},
		},
		{
			name:    "no ready injector",
			objs:    []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-b", false)},
			args:    []string{"--wait", "100ms"},
			states:  map[string][]string{},
			wantErr: []string{"not done within 100ms: no ready injector pod"},
		},
		{
			name:    "unreadable metrics",
			objs:    []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			args:    []string{"--wait", "100ms"},
			states:  map[string][]string{"injector-a": {"conduit_extension_hook_plugin{extension=\"viz\" 1\n"}},
			wantErr: []string{"injector-a: unreadable metrics"},
		},
		{
			name:    "no wait",
			objs:    []runtime.Object{injectorOnly, controlPlanePod("injector", "injector-a", true)},
			args:    []string{"--wait", "0"},
			states:  map[string][]string{"injector-a": {hookGauge("viz", pluginhost.StateFailed, waitDigest)}},
			wantOut: []string{"the control plane runs its hooks within seconds"},
			reads:   map[string]bool{"injector-a": false},
		},
		{
			name:     "disallow",
			objs:     []runtime.Object{injectorOnly, allowed, controlPlanePod("injector", "injector-a", true)},
			args:     []string{"disallow"},
			states:   map[string][]string{"injector-a": {running, hookGauge("viz", pluginhost.StateNotAllowed, "")}},
			wantOut:  []string{"Extension viz removed from the allow-list: its hooks no longer run."},
			minReads: map[string]int{"injector-a": 2},
		},
		{
			name:    "disallow, still running",
			objs:    []runtime.Object{injectorOnly, allowed, controlPlanePod("injector", "injector-a", true)},
			args:    []string{"disallow", "--wait", "100ms"},
			states:  map[string][]string{"injector-a": {running}},
			wantErr: []string{"viz is out of the allow-list, but the control plane still runs its hooks", "injector-a (for sha256:111111111111…): running"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := serveHookStates(t, tt.states)
			k, _ := fakeKube(false, append(tt.objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit"}})...)
			args := []string{"extensions", "allow", "viz", "--sha256", waitDigest}
			if len(tt.args) > 0 && tt.args[0] == "disallow" {
				args = append([]string{"extensions", "disallow", "viz"}, tt.args[1:]...)
			} else {
				args = append(args, tt.args...)
			}
			out, _, err := runWith(t, k, args...)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; output:\n%s", out)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\nlacks %q", err, w)
					}
				}
			} else if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output %q\nlacks %q", out, w)
				}
			}
			for pod, want := range tt.reads {
				if got := reads(pod) > 0; got != want {
					t.Errorf("metrics of %s read: %v, want %v", pod, got, want)
				}
			}
			for pod, want := range tt.minReads {
				if got := reads(pod); got < want {
					t.Errorf("metrics of %s read %d times, want at least %d", pod, got, want)
				}
			}
			// allow wrote the entry whatever the wait's outcome.
			al, _, err := pluginhost.ReadAllowList(context.Background(), k.Client, "conduit")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := al["viz"]; ok == (len(tt.args) > 0 && tt.args[0] == "disallow") {
				t.Errorf("allow-list after the command: %v", al)
			}
		})
	}
}

func TestHookState(t *testing.T) {
	for _, tt := range []struct {
		name, metrics, state, sha, policy, err string
	}{
		{name: "running", metrics: hookGauge("viz", pluginhost.StateRunning, waitDigest), state: pluginhost.StateRunning, sha: waitDigest, policy: "Ignore"},
		{name: "running, Fail", metrics: hookGaugeOf("viz", pluginhost.StateRunning, waitDigest, `,failure_policy="Fail"`), state: pluginhost.StateRunning, sha: waitDigest, policy: "Fail"},
		// The series before (another extension's) has a policy; this one none.
		{name: "running, no policy reported", metrics: hookGaugeOf("viz", pluginhost.StateRunning, waitDigest, ""), state: pluginhost.StateRunning, sha: waitDigest},
		{name: "another extension only", metrics: hookGauge("hello", pluginhost.StateRunning, waitDigest)},
		{name: "no gauge", metrics: "# TYPE up gauge\nup 1\n"},
		{name: "not allowed", metrics: hookGauge("viz", pluginhost.StateNotAllowed, ""), state: pluginhost.StateNotAllowed},
		{name: "garbage", metrics: "conduit_extension_hook_plugin{ 1\n", err: "unreadable metrics"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			state, sha, policy, err := hookState([]byte(tt.metrics), "viz")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || state != tt.state || sha != tt.sha || policy != tt.policy {
				t.Errorf("hookState = %q, %q, %q, %v; want %q, %q, %q", state, sha, policy, err, tt.state, tt.sha, tt.policy)
			}
		})
	}
}

// TestCheckExtensionHooks: mesh check fails while a pod that calls an
// allowed extension's hooks does not run its allowed binary.
func TestCheckExtensionHooks(t *testing.T) {
	ext := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz",
		Labels:      map[string]string{pluginhost.LabelExtension: "viz"},
		Annotations: map[string]string{pluginhost.AnnotationInjectorHook: "viz-hooks.conduit-viz.svc:8089"}}}
	allowed := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: pluginhost.AllowListName, Namespace: "conduit"},
		Data: map[string]string{"viz": "sha256:" + waitDigest}}
	allowedFail := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: pluginhost.AllowListName, Namespace: "conduit"},
		Data: map[string]string{"viz": "sha256:" + waitDigest + " failurePolicy=Fail"}}
	injector := controlPlanePod("injector", "injector-a", true)
	for _, tt := range []struct {
		name    string
		objs    []runtime.Object
		state   string
		wantErr string
		// fatal: an error, not a warning (failure policy Fail)
		fatal bool
	}{
		{name: "nothing allowed", objs: []runtime.Object{ext, injector}, state: hookGauge("viz", pluginhost.StateNotAllowed, "")},
		{name: "allowed, not installed", objs: []runtime.Object{allowed, injector}},
		{name: "running", objs: []runtime.Object{ext, allowed, injector}, state: hookGauge("viz", pluginhost.StateRunning, waitDigest)},
		{name: "failed", objs: []runtime.Object{ext, allowed, injector}, state: hookGauge("viz", pluginhost.StateFailed, waitDigest),
			wantErr: "viz: injector-a (for sha256:111111111111…): failed"},
		{name: "refused", objs: []runtime.Object{ext, allowed, injector}, state: hookGauge("viz", pluginhost.StateRefused, waitDigest),
			wantErr: "viz: injector-a (for sha256:111111111111…): refused"},
		{name: "an older digest running", objs: []runtime.Object{ext, allowed, injector}, state: hookGauge("viz", pluginhost.StateRunning, oldDigest),
			wantErr: "viz: injector-a runs sha256:222222222222…, not the allowed sha256:111111111111… yet"},
		{name: "no ready injector", objs: []runtime.Object{ext, allowed, controlPlanePod("injector", "injector-b", false)},
			wantErr: "viz: no ready injector pod"},
		{name: "failure policy Fail, running", objs: []runtime.Object{ext, allowedFail, injector},
			state: hookGaugeOf("viz", pluginhost.StateRunning, waitDigest, `,failure_policy="Fail"`)},
		{name: "failure policy Fail, still running under Ignore", objs: []runtime.Object{ext, allowedFail, injector}, state: hookGauge("viz", pluginhost.StateRunning, waitDigest),
			wantErr: "viz: injector-a runs it under failure policy Ignore, not Fail yet"},
		{name: "failure policy Fail, failed", objs: []runtime.Object{ext, allowedFail, injector}, state: hookGauge("viz", pluginhost.StateFailed, waitDigest),
			wantErr: "viz: injector-a (for sha256:111111111111…): failed (its hook binary could not be fetched or started yet: are the extension's pods ready, with proxies this control plane certified? mesh check --proxy) (failure policy Fail: the injector refuses the pods it would patch)", fatal: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			serveHookStates(t, map[string][]string{"injector-a": {tt.state}})
			k, _ := fakeKube(false, tt.objs...)
			ch := &checker{kube: k, ns: "conduit", now: time.Now}
			err := ch.extensionHooks(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
			}
			want := healthcheck.Warn
			if tt.fatal {
				want = healthcheck.Failure
			}
			if got := healthcheck.StatusOf(err); got != want {
				t.Errorf("status %s, want %s", got, want)
			}
		})
	}
}

// TestHooksSummary: mesh extensions list says an allowed extension's hooks
// run only when every pod that calls them runs the allowed entry, and names
// each pod that does not, with why.
func TestHooksSummary(t *testing.T) {
	entry := pluginhost.AllowEntry{SHA256: strings.Repeat("ab", 32), FailurePolicy: pluginhost.Fail}
	running := func(comp, pod string) podHookState {
		return podHookState{component: comp, pod: pod, state: pluginhost.StateRunning, sha: entry.SHA256, policy: "Fail"}
	}
	for _, tc := range []struct {
		name      string
		states    []podHookState
		wantHooks string
		wantWarn  []string // substrings; none: no warning
	}{
		{"every pod runs it", []podHookState{running("injector", "inj-a"), running("injector", "inj-b"), running("destination", "dst-a")}, "allowed, running", nil},
		{"one pod refused it", []podHookState{running("injector", "inj-a"),
			{component: "injector", pod: "inj-b", state: pluginhost.StateRefused, sha: entry.SHA256, policy: "Fail"}},
			"allowed, not running", []string{"sha256:abababababab…, failure policy Fail", "inj-b (for sha256:abababababab…): refused"}},
		{"under the former policy", []podHookState{{component: "injector", pod: "inj-a", state: pluginhost.StateRunning, sha: entry.SHA256, policy: "Ignore"}},
			"allowed, not running", []string{"inj-a runs it under failure policy Ignore, not Fail yet"}},
		{"no ready destination pod", []podHookState{running("injector", "inj-a"), {component: "destination"}},
			"allowed, not running", []string{"no ready destination pod"}},
		{"a pod's metrics unreadable", []podHookState{{component: "injector", pod: "inj-a", err: errors.New("port-forward: refused")}},
			"allowed, not running", []string{"inj-a: port-forward: refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hooks, warn := hooksSummary(tc.states, entry)
			if hooks != tc.wantHooks {
				t.Errorf("hooks %q, want %q", hooks, tc.wantHooks)
			}
			if (warn != "") != (len(tc.wantWarn) > 0) {
				t.Errorf("warning %q, want one: %v", warn, len(tc.wantWarn) > 0)
			}
			for _, w := range tc.wantWarn {
				if !strings.Contains(warn, w) {
					t.Errorf("warning %q lacks %q", warn, w)
				}
			}
		})
	}
}
