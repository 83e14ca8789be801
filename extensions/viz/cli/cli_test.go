package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/extensions/viz/internal/fixture"
	"github.com/conduit-mesh/conduit/extensions/viz/internal/promfake"
	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"github.com/conduit-mesh/conduit/extensions/viz/metricsapi"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (go test -update, then review the diff):\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// run runs `viz args...` against a metrics API served from the fixture's
// fake Prometheus and fake cluster.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	prom := promfake.New(fixture.Series())
	t.Cleanup(prom.Close)
	eng := &metrics.Engine{Prom: &metrics.Prometheus{URL: prom.URL}, Kube: fixture.Kube(), Dynamic: fixture.Dynamic()}
	api := httptest.NewServer(metricsapi.Handler(eng, slog.New(slog.DiscardHandler)))
	t.Cleanup(api.Close)
	var out, errb bytes.Buffer
	env := &Env{Out: &out, Err: &errb, In: strings.NewReader(""),
		NewAPI: func(_ context.Context, k KubeFlags, vizNS string) (API, string, error) {
			// --viz-namespace as given; empty (found by its label) without it.
			want := ""
			for i, a := range args {
				if a == "--viz-namespace" && i+1 < len(args) {
					want = args[i+1]
				}
			}
			if vizNS != want {
				t.Errorf("viz namespace = %q, want %q", vizNS, want)
			}
			ns := k.Namespace
			if ns == "" {
				ns = "emojivoto"
			}
			return metricsapi.NewHTTPClient(api.URL, nil), ns, nil
		}}
	root := NewCommand(env)
	root.SetArgs(append([]string{"viz"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestGoldenOutput(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"stat_deploy.golden", []string{"stat", "deploy"}},
		{"stat_deploy_wide.golden", []string{"stat", "deploy", "-o", "wide"}},
		{"stat_deploy.golden", []string{"stat", "deploy", "--viz-namespace", "viz-other"}},
		{"stat_deploy_web.json", []string{"stat", "deploy/web", "-o", "json"}},
		{"stat_deploy_all.golden", []string{"stat", "deploy", "-A"}},
		{"stat_svc.golden", []string{"stat", "svc", "-t", "5m"}},
		{"stat_ns.golden", []string{"stat", "ns"}},
		{"stat_pod.golden", []string{"stat", "po", "-n", "emojivoto"}},
		{"stat_sts.golden", []string{"stat", "sts"}},
		{"stat_to.golden", []string{"stat", "deploy", "--to", "deploy/emoji"}},
		{"stat_from.golden", []string{"stat", "deploy", "--from", "deploy/web"}},
		{"stat_empty_ns.golden", []string{"stat", "ds", "-n", "other"}},
		{"edges.golden", []string{"edges", "deploy"}},
		{"edges_wide.golden", []string{"edges", "deploy/web", "-o", "wide"}},
		{"edges.json", []string{"edges", "deploy", "-o", "json"}},
		{"routes.golden", []string{"routes", "svc/emoji-svc"}},
		{"routes_deploy.json", []string{"routes", "deploy/emoji", "-o", "json"}},
		{"routes_unmeshed_clients.golden", []string{"routes", "svc/web-svc"}},
		{"routes_none.golden", []string{"routes", "deploy/web"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, err := run(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, out)
		})
	}
}

// TestRoutesHelp: the help says which requests the routes count.
func TestRoutesHelp(t *testing.T) {
	out, err := run(t, "routes", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"measured, by the client's proxy", "meshed clients only", "[DEFAULT]"} {
		if !strings.Contains(out, want) {
			t.Errorf("mesh viz routes --help lacks %q:\n%s", want, out)
		}
	}
}

func TestCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stat", "cronjob"}, "unknown resource type"},
		{[]string{"stat", "deploy", "-o", "yaml"}, "accepted: table, wide, json"},
		{[]string{"stat", "deploy", "-t", "1ms"}, "out of range"},
		{[]string{"stat", "deploy/nope"}, `deployment "nope" not found in namespace emojivoto`},
		{[]string{"stat", "deploy", "--from", "deploy/web", "--to", "deploy/emoji"}, "cannot be combined"},
		{[]string{"edges", "svc"}, "between workloads"},
		{[]string{"routes", "svc"}, "one service or workload"},
		{[]string{"stat"}, "mesh viz stat: accepts between 1 and 2 arg(s), received 0 (usage: mesh viz stat TYPE[/NAME] [NAME] [flags])"},
		// A bad window reached the cluster (edges, routes): refused first, as stat does.
		{[]string{"edges", "deploy", "-t", "-1m"}, "metrics: window -1m0s is out of range"},
		{[]string{"routes", "svc/emoji-svc", "-t", "soon"}, `metrics: window "soon"`},
		// Printed the help of viz and exited 0.
		{[]string{"bogus"}, `unknown command "bogus" for "mesh viz"`},
		// Named no command.
		{[]string{"tap", "deploy/web", "--duration", "5s"}, "mesh viz tap: unknown flag: --duration (see 'mesh viz tap --help')"},
		{[]string{"top"}, "mesh viz top: accepts between 1 and 2 arg(s), received 0 (usage: mesh viz top TYPE/NAME [flags])"},
		{[]string{"dashboard", "x"}, `unknown command "x" for "mesh viz dashboard"`},
	} {
		if _, err := run(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

type scraper struct {
	s   metrics.ScrapeStatus
	err error
}

func (f scraper) Scrapes(context.Context) (metrics.ScrapeStatus, error) { return f.s, f.err }

func TestCheck(t *testing.T) {
	cats := Check(context.Background(), fake.NewClientset(), nil, "conduit-viz")
	if len(cats) != 1 || len(cats[0].Checks) != 1 || cats[0].Checks[0].Status != sdk.StatusFail || !strings.Contains(cats[0].Checks[0].Hint, "mesh viz install") {
		t.Fatalf("check = %+v", cats)
	}
	foreign := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz"}}
	cats = Check(context.Background(), fake.NewClientset(foreign), nil, "conduit-viz")
	if last := cats[0].Checks[len(cats[0].Checks)-1]; last.Status != sdk.StatusFail || !strings.Contains(last.Description, "labelled") {
		t.Fatalf("unlabelled namespace passed: %+v", cats)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz", Labels: map[string]string{ExtensionLabel: "viz"}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "conduit-viz", Labels: map[string]string{ExtensionLabel: "viz"}}}
	cats = Check(context.Background(), fake.NewClientset(ns, dep), scraper{s: metrics.ScrapeStatus{Targets: 3, Up: 3}}, "conduit-viz")
	if c := cats[0].Checks; len(c) < 2 || c[0].Status != sdk.StatusOK || c[1].Status != sdk.StatusFail || !strings.Contains(c[1].Error, "web") {
		t.Fatalf("unavailable deployment passed: %+v", cats)
	}

	dep.Status = appsv1.DeploymentStatus{AvailableReplicas: 1, Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: "True"}}}
	for _, tc := range []struct {
		s    scraper
		last sdk.CheckStatus
		desc string
	}{
		{scraper{s: metrics.ScrapeStatus{Targets: 3, Up: 3}}, sdk.StatusOK, "(3 up)"},
		{scraper{s: metrics.ScrapeStatus{Targets: 3, Up: 2}}, sdk.StatusWarn, "2 of 3 up"},
		{scraper{}, sdk.StatusWarn, "scrapes the proxies"},
		{scraper{err: errors.New("boom")}, sdk.StatusFail, "metrics API"},
	} {
		cats = Check(context.Background(), fake.NewClientset(ns, dep), tc.s, "conduit-viz")
		c := cats[0].Checks
		last := c[len(c)-1]
		if c[1].Status != sdk.StatusOK || last.Status != tc.last || !strings.Contains(last.Description, tc.desc) {
			t.Errorf("scrapes %+v: checks = %+v", tc.s, c)
		}
	}
}

// TestBadInputBeforeConnecting: a bad flag value is refused before the
// cluster is reached (edges and routes sent a bad -t to the cluster, so
// that with no cluster the user saw a kubeconfig error instead).
func TestBadInputBeforeConnecting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stat", "deploy", "-t", "-5s"}, "window -5s is out of range"},
		{[]string{"edges", "deploy", "-t", "-1m"}, "window -1m0s is out of range"},
		{[]string{"edges", "deploy", "-t", "abc"}, `window "abc"`},
		{[]string{"routes", "svc/web-svc", "-t", "0s"}, "window 0s is out of range"},
		{[]string{"routes", "svc/web-svc", "-o", "yaml"}, `unknown output format "yaml"`},
		{[]string{"stat", "bogus"}, `"bogus"`},
		{[]string{"edges", "bogus/web"}, `"bogus"`},
		{[]string{"routes", "bogus/web"}, `"bogus"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			env := &Env{Out: &out, Err: &errb, In: strings.NewReader(""),
				NewAPI: func(context.Context, KubeFlags, string) (API, string, error) {
					return nil, "", errors.New("connected to the cluster")
				}}
			root := NewCommand(env)
			root.SetArgs(append([]string{"viz"}, tc.args...))
			err := root.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if out.Len() != 0 || errb.Len() != 0 {
				t.Errorf("stdout %q stderr %q", out.String(), errb.String())
			}
		})
	}
}

// TestCheckSaysWhatFailed: every check that does not pass says what went
// wrong (Error) and what to do (Hint); the error was in the hint, and the
// host printed "reported by the extension" in its place.
func TestCheckSaysWhatFailed(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz", Labels: map[string]string{ExtensionLabel: "viz"}}}
	foreign := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz"}}
	ready := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "conduit-viz", Labels: map[string]string{ExtensionLabel: "viz"}},
		Status: appsv1.DeploymentStatus{AvailableReplicas: 1, Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: "True"}}}}
	unready := ready.DeepCopy()
	unready.Status = appsv1.DeploymentStatus{}
	unreachable := fake.NewClientset()
	unreachable.PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	})
	for _, tc := range []struct {
		name      string
		kc        *fake.Clientset
		api       scraper
		wantError string
	}{
		{"unreachable", unreachable, scraper{}, "connection refused"},
		{"not installed", fake.NewClientset(), scraper{}, "namespace conduit-viz not found"},
		{"foreign namespace", fake.NewClientset(foreign), scraper{}, "has no label conduit.dev/extension=viz"},
		{"no deployment", fake.NewClientset(ns), scraper{s: metrics.ScrapeStatus{Targets: 1, Up: 1}}, "no viz deployment found in conduit-viz"},
		{"deployment unavailable", fake.NewClientset(ns, unready), scraper{s: metrics.ScrapeStatus{Targets: 1, Up: 1}}, "not available yet: [web]"},
		{"metrics API down", fake.NewClientset(ns, ready), scraper{err: errors.New("boom")}, "boom"},
		{"no meshed pod", fake.NewClientset(ns, ready), scraper{}, "no meshed pod found yet"},
		{"some scrapes down", fake.NewClientset(ns, ready), scraper{s: metrics.ScrapeStatus{Targets: 3, Up: 1}}, "2 of 3 proxies"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cats := Check(context.Background(), tc.kc, tc.api, "") // as the plugin does: found by its label
			var failed []sdk.CheckResult
			for _, c := range cats[0].Checks {
				if c.Status != sdk.StatusOK {
					failed = append(failed, c)
				}
			}
			if len(failed) != 1 {
				t.Fatalf("want one check that does not pass: %+v", cats[0].Checks)
			}
			if f := failed[0]; !strings.Contains(f.Error, tc.wantError) || f.Hint == "" || strings.Contains(f.Hint, tc.wantError) {
				t.Errorf("error %q (want %q), hint %q", f.Error, tc.wantError, f.Hint)
			}
		})
	}
}
