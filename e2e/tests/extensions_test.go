//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/cli/healthcheck"
	"github.com/conduit-mesh/conduit/e2e/framework"
)

// category finds a category of a `mesh check -o json` report by name.
func category(r healthcheck.Report, name string) (int, bool) {
	for i, cat := range r.Categories {
		if cat.Name == name {
			return i, true
		}
	}
	return -1, false
}

// TestExtensionHello follows a third-party extension's life as a user sees
// it, with the plugin SDK's example (plugin-sdk/examples/hello):
// `mesh hello install | kubectl apply -f -`; the core's injector finds its
// injector hook through the extension's namespace and newly injected pods
// get the hook's patch; `mesh check` runs the extension's checks; without
// the plugin binary on the machine they turn into the documented warning.
func TestExtensionHello(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	bin := filepath.Dir(f.Mesh) // make build puts mesh-hello beside mesh
	t.Setenv("MESH_PLUGINS_DIR", bin)
	// make build puts mesh-hello there: its absence is a failure, not a skip.
	f.MeshCmd(t, "hello", "greet", "--help")
	const extNS = "conduit-hello"
	f.CollectOnFailure(t, extNS)
	ctx := framework.Context(t, 10*time.Minute)

	manifests := f.MeshCmd(t, "hello", "install")
	if !strings.Contains(manifests, "conduit.dev/extension: hello") {
		t.Fatalf("mesh hello install: the namespace is not labelled as an extension:\n%s", manifests)
	}
	f.KubectlCmd(t, manifests, "apply", "-f", "-")
	t.Cleanup(func() {
		if r := f.RunMesh(context.Background(), "hello", "uninstall"); r.Err == nil {
			f.RunKubectl(context.Background(), r.Stdout, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
		}
	})
	f.WaitRollout(t, extNS, "deployment/hello", 3*time.Minute)

	// The injector lists the extensions every 30 s: a dry-run create (which
	// goes through the admission webhooks, and makes the hooks skip their
	// side effects) shows when the hook's patch is in.
	ns := f.NewNamespace(t, "hello", nil)
	pod := func(name, greeting string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"conduit.dev/inject": "enabled"}},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: vizPtr(int64(1)),
				Containers: []corev1.Container{{Name: "app", Image: f.Image("testapp"),
					ImagePullPolicy: corev1.PullIfNotPresent, Args: []string{"sleep"}}},
			},
		}
		if greeting != "" {
			p.Annotations["hello.conduit.dev/greeting"] = greeting
		}
		return p
	}
	greetingOf := func(p *corev1.Pod) (string, bool) {
		for _, c := range p.Spec.Containers {
			if c.Name != "app" {
				continue
			}
			for _, e := range c.Env {
				if e.Name == "HELLO_GREETING" {
					return e.Value, true
				}
			}
		}
		return "", false
	}
	dryRun := func(ctx context.Context) (*corev1.Pod, error) {
		return f.Client.CoreV1().Pods(ns).Create(ctx, pod("probe", "from e2e"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	}
	// hookState is hello's HOOKS in mesh extensions list, and its
	// warnings.
	hookState := func(t *testing.T) (string, string) {
		t.Helper()
		r := f.RunMesh(ctx, "extensions", "list", "-o", "json")
		var l struct {
			Extensions []struct {
				Name, Hooks string
				Warnings    []string
			} `json:"extensions"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &l); err != nil {
			t.Fatalf("mesh extensions list -o json (err %v): %v\n%s%s", r.Err, err, r.Stdout, r.Stderr)
		}
		for _, e := range l.Extensions {
			if e.Name == "hello" {
				return e.Hooks, strings.Join(e.Warnings, "\n")
			}
		}
		return "", ""
	}

	// Installed but not allowed: the control plane does not run its hook,
	// and says so (mesh extensions list, mesh check).
	if got, _ := hookState(t); got != "not allowed" {
		t.Errorf("mesh extensions list: hello hooks %q, want \"not allowed\"", got)
	}
	time.Sleep(3 * time.Second) // what the injector needs to see the new namespace
	if p, err := dryRun(ctx); err != nil {
		t.Fatal(err)
	} else if g, ok := greetingOf(p); ok {
		t.Fatalf("the hook of an extension missing from the allow-list ran (HELLO_GREETING %q)", g)
	}
	if r := f.RunMesh(ctx, "check", "-o", "json"); !strings.Contains(r.Stdout, "mesh extensions allow hello") {
		t.Errorf("mesh check does not say how to allow the extension's hooks:\n%s", r.Stdout)
	}

	// mesh extensions allow hello: fetches the binary the extension hands
	// out, pins its SHA-256; the injector fetches it too, checks it and runs it.
	allowed := f.MeshCmd(t, "extensions", "allow", "hello")
	if !strings.Contains(allowed, "Extension hello allowed (sha256:") {
		t.Fatalf("mesh extensions allow hello:\n%s", allowed)
	}
	t.Cleanup(func() { f.RunMesh(context.Background(), "extensions", "disallow", "hello") })
	if got, warn := hookState(t); got != "allowed, running" || warn != "" {
		t.Errorf("mesh extensions list: hello hooks %q (warnings %q) after allow, want \"allowed, running\"", got, warn)
	}
	// allow returned once the injector runs the hook: a pod created now
	// gets its patch.
	if !strings.Contains(allowed, "The control plane runs its hooks from now on (conduit-injector-") {
		t.Errorf("mesh extensions allow hello does not say that the injector runs the hook:\n%s", allowed)
	}
	if p, err := dryRun(ctx); err != nil {
		t.Fatal(err)
	} else if g, ok := greetingOf(p); !ok || g != "from e2e" || !injected(p) {
		t.Fatalf("a pod created right after allow returned: injected %v, HELLO_GREETING %q (set %v); want injected with the hook's variable", injected(p), g, ok)
	}

	// A real pod gets the patch, runs, and sees the variable; a pod without
	// the annotation is injected without it.
	created, err := f.Client.CoreV1().Pods(ns).Create(ctx, pod("greeted", "hi from e2e"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := greetingOf(created); !ok || g != "hi from e2e" || !injected(created) {
		t.Fatalf("pod greeted: injected %v, HELLO_GREETING %q (set %v); want injected with the hook's variable", injected(created), g, ok)
	}
	plain, err := f.Client.CoreV1().Pods(ns).Create(ctx, pod("plain", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := greetingOf(plain); ok || !injected(plain) {
		t.Errorf("pod plain: injected %v, HELLO_GREETING %q (set %v); want injected without the variable", injected(plain), g, ok)
	}
	f.WaitPodsReady(t, ns, "", 2, 3*time.Minute)
	if out := f.Exec(t, ns, "greeted", "app", "testapp", "env"); !strings.Contains(out, "HELLO_GREETING=hi from e2e") {
		t.Errorf("env in pod greeted:\n%s", out)
	}

	// --wait 0: a failing check is what some steps expect, and check would
	// retry it for its default 5 minutes.
	check := func(t *testing.T) healthcheck.Report {
		t.Helper()
		r := f.RunMesh(ctx, "check", "-o", "json", "--wait", "0")
		var c healthcheck.Report
		if err := json.Unmarshal([]byte(r.Stdout), &c); err != nil {
			t.Fatalf("mesh check -o json (err %v): %v\n%s\n%s", r.Err, err, r.Stdout, r.Stderr)
		}
		return c
	}
	// hooksCheck is the core's check that the allowed hooks run.
	hooksCheck := func(t *testing.T) healthcheck.Result {
		t.Helper()
		c := check(t)
		i, ok := category(c, "conduit-control-plane")
		if ok {
			for _, ck := range c.Categories[i].Checks {
				if ck.Description == "the control plane runs the hooks of the extensions in the allow-list" {
					return ck
				}
			}
		}
		t.Fatalf("mesh check has no check of the extensions' hooks: %+v", c)
		return healthcheck.Result{}
	}
	if ck := hooksCheck(t); ck.Status != healthcheck.Success {
		t.Errorf("mesh check while hello's hook runs: %+v", ck)
	}

	// A digest that is not the binary's (an upgraded or tampered image):
	// the injector refuses to run it, allow says so, and pods are injected
	// without the hook from then on.
	zero := strings.Repeat("0", 64)
	refused := func(t *testing.T, args ...string) {
		t.Helper()
		r := f.RunMesh(ctx, append([]string{"extensions", "allow", "hello", "--sha256", zero}, args...)...)
		if r.Err == nil || !strings.Contains(r.Stderr, "conduit-injector-") || !strings.Contains(r.Stderr, "refused the binary") {
			t.Fatalf("mesh extensions allow hello with a wrong digest: err %v, want one naming the injector pod that refused the binary:\n%s%s", r.Err, r.Stdout, r.Stderr)
		}
	}
	refused(t)
	if p, err := dryRun(ctx); err != nil {
		t.Fatal(err)
	} else if g, ok := greetingOf(p); ok || !injected(p) {
		t.Fatalf("after the refusal: injected %v, HELLO_GREETING %q (set %v); want injected without the hook's variable", injected(p), g, ok)
	}
	// mesh extensions list says the hooks do not run, and which pod refused them.
	if got, warn := hookState(t); got != "allowed, not running" || !strings.Contains(warn, "conduit-injector-") || !strings.Contains(warn, "refused") {
		t.Errorf("mesh extensions list while the injector refuses hello's binary: hooks %q, warnings %q; want \"allowed, not running\" and the injector pod that refused it", got, warn)
	}
	// Failure policy Ignore: pods are injected without the patch, a warning.
	if ck := hooksCheck(t); ck.Status != healthcheck.Warn || !strings.Contains(ck.Error, "hello: conduit-injector-") || !strings.Contains(ck.Error, "refused") {
		t.Errorf("mesh check while the injector refuses hello's binary: %+v; want a warning naming the injector pod", ck)
	}
	// The same with failurePolicy=Fail: pods are refused, saying why. allow
	// waits for the refusal under the new policy (the gauge's
	// failure_policy), not the one above under Ignore: a pod created right
	// after it returns is refused.
	refused(t, "--failure-policy", "Fail")
	if _, err := dryRun(ctx); err == nil || !strings.Contains(err.Error(), "extension hello (failurePolicy=Fail)") {
		t.Fatalf("a pod created right after allow --failure-policy Fail returned: %v; want it refused, naming extension hello (failurePolicy=Fail)", err)
	}
	// Failure policy Fail: pods are refused, an error.
	if ck := hooksCheck(t); ck.Status != healthcheck.Failure || !strings.Contains(ck.Error, "failure policy Fail") {
		t.Errorf("mesh check while the injector refuses a Fail extension's binary: %+v; want an error", ck)
	}
	f.MeshCmd(t, "extensions", "allow", "hello")
	if p, err := dryRun(ctx); err != nil {
		t.Fatalf("a pod created right after the digest was allowed again: %v", err)
	} else if g, ok := greetingOf(p); !ok || g != "from e2e" {
		t.Fatalf("a pod created right after the digest was allowed again: HELLO_GREETING %q (set %v), want the hook's", g, ok)
	}

	// mesh check merges the extension's checks.
	c := check(t)
	i, ok := category(c, "hello-extension")
	if !ok {
		t.Fatalf("mesh check has no hello-extension category: %+v", c)
	}
	for _, ck := range c.Categories[i].Checks {
		if ck.Status != healthcheck.Success {
			t.Errorf("hello-extension check %q: %s %s (%s)", ck.Description, ck.Status, ck.Error, ck.Hint)
		}
	}
	if _, ok := category(c, "hello"); !ok {
		t.Errorf("mesh check lacks the extension's own category hello: %+v", c)
	}

	// mesh extensions disallow hello returns once the injector has stopped
	// the hook: a pod created right after is injected without its patch.
	disallowed := f.MeshCmd(t, "extensions", "disallow", "hello")
	if !strings.Contains(disallowed, "Extension hello removed from the allow-list: its hooks no longer run.") {
		t.Errorf("mesh extensions disallow hello does not say that the hooks stopped:\n%s", disallowed)
	}
	if p, err := dryRun(ctx); err != nil {
		t.Fatalf("a pod created right after disallow returned: %v", err)
	} else if g, ok := greetingOf(p); ok || !injected(p) {
		t.Fatalf("a pod created right after disallow returned: injected %v, HELLO_GREETING %q (set %v); want injected without the hook's variable", injected(p), g, ok)
	}
	if got, _ := hookState(t); got != "not allowed" {
		t.Errorf("mesh extensions list: hello hooks %q after disallow, want \"not allowed\"", got)
	}
	if ck := hooksCheck(t); ck.Status != healthcheck.Success {
		t.Errorf("mesh check after disallow (no hook to run): %+v", ck)
	}

	// Without the binary: a warning that says how to get it, not a failure.
	t.Setenv("MESH_PLUGINS_DIR", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	var path []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "mesh-hello")); err != nil {
			path = append(path, d)
		}
	}
	t.Setenv("PATH", strings.Join(path, string(os.PathListSeparator)))
	c = check(t)
	i, ok = category(c, "hello-extension")
	if !ok || len(c.Categories[i].Checks) == 0 {
		t.Fatalf("mesh check without the plugin has no hello-extension checks: %+v", c)
	}
	const want = "its plugin mesh-hello is not on this machine"
	var found bool
	for _, ck := range c.Categories[i].Checks {
		if strings.Contains(ck.Error+ck.Hint, want) {
			found = true
			if ck.Status != healthcheck.Warn {
				t.Errorf("without the plugin: %+v; want a warning", ck)
			}
		}
	}
	if !found {
		t.Errorf("without the plugin: %+v; want a warning containing %q", c.Categories[i].Checks, want)
	}
}
