package metrics

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/extensions/viz/internal/fixture"
	"github.com/conduit-mesh/conduit/extensions/viz/internal/promfake"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	h := []bucket{{5, 8}, {1, 2}, {10, 10}, {inf, 10}} // unsorted on purpose
	for _, tc := range []struct {
		q    float64
		b    []bucket
		want float64
		ok   bool
	}{
		{0.5, h, 3, true},
		{0.95, h, 8.75, true},
		{0.99, h, 9.75, true},
		{0.1, h, 0.5, true},
		{0.99, []bucket{{1, 5}, {inf, 10}}, 1, true}, // rank in +Inf: upper bound of the previous bucket
		{0.5, []bucket{{1, 0}, {inf, 0}}, 0, false},  // no observations
		{0.5, []bucket{{1, 3}, {5, 6}}, 0, false},    // no +Inf bucket
		{0.5, nil, 0, false},
		{1.5, h, 0, false},
	} {
		got, ok := quantile(tc.q, tc.b)
		if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v, %v) = %v, %v; want %v, %v", tc.q, tc.b, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseResource(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want Resource
		err  string
	}{
		{[]string{"deploy"}, Resource{Kind: KindDeployment, Namespace: "ns"}, ""},
		{[]string{"deploy/web"}, Resource{Kind: KindDeployment, Namespace: "ns", Name: "web"}, ""},
		{[]string{"svc", "web"}, Resource{Kind: KindService, Namespace: "ns", Name: "web"}, ""},
		{[]string{"ns/emojivoto"}, Resource{Kind: KindNamespace, Name: "emojivoto"}, ""},
		{[]string{"STS"}, Resource{Kind: KindStatefulSet, Namespace: "ns"}, ""},
		{[]string{"cronjob"}, Resource{}, "unknown resource type"},
		{[]string{"deploy/"}, Resource{}, "empty name"},
		{[]string{"deploy/web", "web"}, Resource{}, "not both"},
		{nil, Resource{}, "want a resource"},
	} {
		got, err := ParseResource(tc.args, "ns")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseResource(%v) err = %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseResource(%v) = %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
}

func TestBuildStatQueries(t *testing.T) {
	q := buildStatQueries(selector{"direction": "inbound", "namespace": "emojivoto", "pod=~": "a|b"}, []string{"namespace", "deployment"}, 90*time.Second)
	want := statQueries{
		requests: `sum by (namespace, deployment, classification, tls) (rate(response_total{direction="inbound", namespace="emojivoto", pod=~"a|b"}[90s]))`,
		latency:  `sum by (namespace, deployment, le) (rate(response_latency_ms_bucket{direction="inbound", namespace="emojivoto", pod=~"a|b"}[90s]))`,
		tcp:      `sum by (namespace, deployment) (tcp_open_connections{direction="inbound", namespace="emojivoto", peer="src", pod=~"a|b"})`,
	}
	if q != want {
		t.Errorf("queries =\n%+v\nwant\n%+v", q, want)
	}
}

func newEngine(t *testing.T) (*Engine, *promfake.Server) {
	t.Helper()
	p := promfake.New(fixture.Series())
	t.Cleanup(p.Close)
	return &Engine{Prom: &Prometheus{URL: p.URL}, Kube: fixture.Kube()}, p
}

func f(v float64) *float64 { return &v }

func eq(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return math.Abs(*a-*b) < 1e-9
}

func TestStat(t *testing.T) {
	type want struct {
		name                        string
		meshed, total               int
		sr, rps, p50, p99, tcp, tls *float64
	}
	emoji := &Resource{Kind: KindDeployment, Namespace: "emojivoto", Name: "emoji"}
	web := &Resource{Kind: KindDeployment, Namespace: "emojivoto", Name: "web"}
	for _, tc := range []struct {
		name string
		req  StatRequest
		want []want
	}{
		{"deployments", StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto"}}, []want{
			{name: "emoji", meshed: 1, total: 1, sr: f(1), rps: f(6), p50: f(1), p99: f(4.92), tcp: f(1), tls: f(1)},
			{name: "vote-bot", meshed: 0, total: 1},
			{name: "web", meshed: 2, total: 2, sr: f(0.9), rps: f(10), p50: f(3), p99: f(9.75), tcp: f(4), tls: f(0)},
		}},
		{"one deployment", StatRequest{Resource: *web}, []want{
			{name: "web", meshed: 2, total: 2, sr: f(0.9), rps: f(10), p50: f(3), p99: f(9.75), tcp: f(4), tls: f(0)},
		}},
		{"services from their pods", StatRequest{Resource: Resource{Kind: KindService, Namespace: "emojivoto"}}, []want{
			{name: "emoji-svc", meshed: 1, total: 1, sr: f(1), rps: f(6), p50: f(1), p99: f(4.92), tcp: f(1), tls: f(1)},
			{name: "web-svc", meshed: 2, total: 2, sr: f(0.9), rps: f(10), p50: f(3), p99: f(9.75), tcp: f(4), tls: f(0)},
		}},
		{"namespaces", StatRequest{Resource: Resource{Kind: KindNamespace}}, []want{
			{name: "emojivoto", meshed: 4, total: 5, sr: f(15.0 / 16), rps: f(16)},
			{name: "other"},
		}},
		{"to a deployment", StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto"}, To: emoji}, []want{
			{name: "emoji", meshed: 1, total: 1},
			{name: "vote-bot", meshed: 0, total: 1},
			{name: "web", meshed: 2, total: 2, sr: f(1), rps: f(6), p50: f(1), tcp: f(1), tls: f(1)},
		}},
		{"from a deployment", StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto"}, From: web}, []want{
			{name: "emoji", meshed: 1, total: 1, sr: f(1), rps: f(6), p50: f(1), tcp: f(1), tls: f(1)},
			{name: "vote-bot", meshed: 0, total: 1},
			{name: "web", meshed: 2, total: 2},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEngine(t)
			rows, err := e.Stat(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != len(tc.want) {
				t.Fatalf("rows = %+v, want %d", rows, len(tc.want))
			}
			for i, w := range tc.want {
				r := rows[i]
				if r.Name != w.name || r.MeshedPods != w.meshed || r.TotalPods != w.total {
					t.Errorf("row %d = %s %d/%d, want %s %d/%d", i, r.Name, r.MeshedPods, r.TotalPods, w.name, w.meshed, w.total)
				}
				if tc.name == "namespaces" { // latency and tcp of a whole namespace are not asserted
					w.p50, w.p99, w.tcp, w.tls = r.LatencyP50, r.LatencyP99, r.TCPConnections, r.TLSRate
				}
				if w.p99 == nil {
					w.p99 = r.LatencyP99
				}
				for _, c := range []struct {
					n         string
					got, want *float64
				}{{"success", r.SuccessRate, w.sr}, {"rps", r.RPS, w.rps}, {"p50", r.LatencyP50, w.p50}, {"p99", r.LatencyP99, w.p99}, {"tcp", r.TCPConnections, w.tcp}, {"tls", r.TLSRate, w.tls}} {
					if !eq(c.got, c.want) {
						t.Errorf("%s: %s = %v, want %v", w.name, c.n, deref(c.got), deref(c.want))
					}
				}
			}
		})
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestStatErrors(t *testing.T) {
	e, _ := newEngine(t)
	web := &Resource{Kind: KindDeployment, Namespace: "emojivoto", Name: "web"}
	for _, tc := range []struct {
		req  StatRequest
		want string
	}{
		{StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto", Name: "nope"}}, `deployment "nope" not found in namespace emojivoto`},
		{StatRequest{Resource: Resource{Kind: KindDeployment}}, "needs a namespace"},
		{StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: "x"}, Window: "1s"}, "out of range"},
		{StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: "x"}, Window: "soon"}, "e.g. 30s"},
		{StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto"}, From: web, To: web}, "cannot be combined"},
		{StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto"}, To: &Resource{Kind: KindService, Namespace: "emojivoto"}}, "--to must name"},
	} {
		if _, err := e.Stat(context.Background(), tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Stat(%+v) err = %v, want %q", tc.req, err, tc.want)
		}
	}
}

func TestPrometheusErrors(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string
	}{
		{`{"status":"error","errorType":"bad_data","error":"parse error"}`, "bad_data: parse error"},
		{`<html>proxy error</html>`, "not its API's JSON"},
		{`{"status":"success","data":{"resultType":"matrix","result":[]}}`, "want a vector"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tc.body)) }))
		_, err := (&Prometheus{URL: srv.URL}).Query(context.Background(), "up")
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("body %s: err = %v, want %q", tc.body, err, tc.want)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"NaN"]},{"metric":{"a":"2"},"value":[1,"2.5"]}]}}`))
	}))
	defer srv.Close()
	s, err := (&Prometheus{URL: srv.URL, Now: func() time.Time { return time.Unix(100, 0) }}).Query(context.Background(), "up")
	if err != nil || len(s) != 1 || s[0].Value != 2.5 || s[0].Labels["a"] != "2" {
		t.Errorf("NaN not dropped: %+v, %v", s, err)
	}
}

func TestEdges(t *testing.T) {
	e, p := newEngine(t)
	edges, err := e.Edges(context.Background(), EdgesRequest{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(edges) != 1 {
		t.Fatalf("edges = %+v, want web -> emoji", edges)
	}
	ed := edges[0]
	if ed.Src.Name != "web" || ed.Dst.Name != "emoji" || ed.ClientID != fixture.WebID || ed.ServerID != fixture.EmojiID || !ed.Secured || ed.RPS != 6 {
		t.Errorf("edge = %+v", ed)
	}
	if qs := p.Queries(); !strings.Contains(strings.Join(qs, "\n"), `client_id`) {
		t.Errorf("client identities were not queried: %v", qs)
	}
	if _, err := e.Edges(context.Background(), EdgesRequest{Resource: Resource{Kind: KindService, Namespace: "emojivoto"}}); err == nil {
		t.Error("edges of services accepted")
	}
}

// TestRoutes: routes are measured by the clients' proxies (outbound, where
// the Service's profile is matched), never by the destination's (inbound
// series have no route): a service's routes come from the outbound series
// whose authority is the Service, a workload's from those whose dst_* labels
// name it; the profile's routes without traffic are listed too.
func TestRoutes(t *testing.T) {
	emojiSvc := Resource{Kind: KindService, Namespace: "emojivoto", Name: "emoji-svc"}
	emojiSel := `authority=~"emoji-svc\\.emojivoto\\.svc\\.cluster\\.local(:[0-9]+)?", direction="outbound"`
	out := func(authority, route, class string, v float64, dst ...string) promfake.Series {
		l := map[string]string{"namespace": "emojivoto", "deployment": "web", "direction": "outbound", "authority": authority,
			"route": route, "classification": class}
		for i := 0; i+1 < len(dst); i += 2 {
			l[dst[i]] = dst[i+1]
		}
		return promfake.Series{Metric: "response_total", Labels: l, Value: v}
	}
	for _, tc := range []struct {
		name  string
		res   Resource
		extra []promfake.Series // besides the fixture's
		want  []string          // route authority success rps p50 ("-": none)
		query string            // the response_total query sent
	}{
		{"service: its meshed clients' routes, and its profile's", emojiSvc, nil, []string{
			"FindByShortcode emoji-svc.emojivoto.svc.cluster.local - - -",
			"ListAll " + fixture.EmojiAuthority + " 1 4 2.333",
			"[DEFAULT] " + fixture.EmojiAuthority + " 1 2 0.5",
		}, `sum by (route, authority, classification) (rate(response_total{` + emojiSel + `}[60s]))`},
		{"service: success rate per route, any port, only this service", emojiSvc, []promfake.Series{
			out("emoji-svc.emojivoto.svc.cluster.local:9090", "FindByShortcode", "success", 3),
			out("emoji-svc.emojivoto.svc.cluster.local:9090", "FindByShortcode", "failure", 1),
			out("emoji-svc.emojivoto.svc.cluster.local", "ListAll", "success", 1),
			out("emoji-svc.other.svc.cluster.local:8080", "ListAll", "failure", 5),     // same name, other namespace
			out("emoji-svcXemojivoto.svc.cluster.local:8080", "ListAll", "failure", 5), // dots are not wildcards
			out("emoji-svc.emojivoto.svc.cluster.local.evil:80", "ListAll", "failure", 5),
		}, []string{
			"FindByShortcode emoji-svc.emojivoto.svc.cluster.local:9090 0.75 4 -",
			"ListAll emoji-svc.emojivoto.svc.cluster.local 1 1 -",
			"ListAll " + fixture.EmojiAuthority + " 1 4 2.333",
			"[DEFAULT] " + fixture.EmojiAuthority + " 1 2 0.5",
		}, ""},
		{"service without meshed clients: its profile's routes only", Resource{Kind: KindService, Namespace: "emojivoto", Name: "web-svc"}, nil, []string{
			"GET /api/list web-svc.emojivoto.svc.cluster.local - - -",
			"POST /api/vote web-svc.emojivoto.svc.cluster.local - - -",
		}, ""},
		{"deployment: the outbound series to its pods", Resource{Kind: KindDeployment, Namespace: "emojivoto", Name: "emoji"}, nil, []string{
			"ListAll " + fixture.EmojiAuthority + " 1 4 2.333",
			"[DEFAULT] " + fixture.EmojiAuthority + " 1 2 0.5",
		}, `sum by (route, authority, classification) (rate(response_total{direction="outbound", dst_deployment="emoji", dst_namespace="emojivoto"}[60s]))`},
		{"pod", Resource{Kind: KindPod, Namespace: "emojivoto", Name: "emoji-5c7d8f9b4-xyz12"}, nil, []string{
			"ListAll " + fixture.EmojiAuthority + " 1 4 2.333",
			"[DEFAULT] " + fixture.EmojiAuthority + " 1 2 0.5",
		}, `sum by (route, authority, classification) (rate(response_total{direction="outbound", dst_namespace="emojivoto", dst_pod="emoji-5c7d8f9b4-xyz12"}[60s]))`},
		{"deployment whose only client is not meshed: nothing measured", Resource{Kind: KindDeployment, Namespace: "emojivoto", Name: "web"}, nil, nil,
			`sum by (route, authority, classification) (rate(response_total{direction="outbound", dst_deployment="web", dst_namespace="emojivoto"}[60s]))`},
		{"statefulset: the outbound series to it", Resource{Kind: KindStatefulSet, Namespace: "emojivoto", Name: "redis"}, []promfake.Series{
			out("redis.emojivoto.svc.cluster.local:6379", "", "success", 2, "dst_namespace", "emojivoto", "dst_statefulset", "redis"),
			out("redis.emojivoto.svc.cluster.local:6379", "", "success", 7, "dst_namespace", "other", "dst_statefulset", "redis"),
		}, []string{"[DEFAULT] redis.emojivoto.svc.cluster.local:6379 1 2 -"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := promfake.New(append(fixture.Series(), tc.extra...))
			t.Cleanup(p.Close)
			e := &Engine{Prom: &Prometheus{URL: p.URL}, Kube: fixture.Kube(), Dynamic: fixture.Dynamic()}
			routes, err := e.Routes(context.Background(), RoutesRequest{Resource: tc.res})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range routes {
				got = append(got, fmt.Sprintf("%s %s %s %s %s", r.Route, r.Authority, short(r.SuccessRate), short(r.RPS), short(r.LatencyP50)))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("routes =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if tc.query != "" && !slices.Contains(p.Queries(), tc.query) {
				t.Errorf("queries = %q, want %q among them", p.Queries(), tc.query)
			}
			for _, q := range p.Queries() {
				if !strings.Contains(q, `direction="outbound"`) {
					t.Errorf("query %q is not of the clients' outbound series", q)
				}
			}
		})
	}
	e, _ := newEngine(t)
	for _, tc := range []struct {
		res  Resource
		want string
	}{
		{Resource{Kind: KindService, Namespace: "emojivoto"}, "one service or workload"},
		{Resource{Kind: KindNamespace, Name: "emojivoto"}, "one service or workload"},
		{Resource{Kind: KindService, Namespace: "emojivoto", Name: "nope"}, `not found`},
	} {
		if _, err := e.Routes(context.Background(), RoutesRequest{Resource: tc.res}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Routes(%s) err = %v, want %q", tc.res, err, tc.want)
		}
	}
}

// short formats a metric for a comparison: 4 significant digits, "-" when absent.
func short(p *float64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(*p, 'g', 4, 64)
}

func TestTimeseries(t *testing.T) {
	e, p := newEngine(t)
	e.Now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	ts, err := e.Timeseries(context.Background(), TimeseriesRequest{Resource: Resource{Kind: KindService, Namespace: "emojivoto", Name: "web-svc"}, Range: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	if ts.Step != 10*time.Second || len(ts.RPS) != 61 || len(ts.SuccessRate) != 61 || len(ts.LatencyP95) != 61 {
		t.Fatalf("step %s, %d/%d/%d points", ts.Step, len(ts.RPS), len(ts.SuccessRate), len(ts.LatencyP95))
	}
	first, last := ts.RPS[0], ts.RPS[len(ts.RPS)-1]
	if !last.T.Equal(time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)) || last.T.Sub(first.T) != 10*time.Minute {
		t.Errorf("points from %s to %s", first.T, last.T)
	}
	if last.V != 10 || ts.SuccessRate[0].V != 0.9 || ts.LatencyP95[0].V != 8.75 {
		t.Errorf("rps %v success %v p95 %v", last.V, ts.SuccessRate[0].V, ts.LatencyP95[0].V)
	}
	if qs := strings.Join(p.Queries(), "\n"); !strings.Contains(qs, `pod=~"web-6d9f7c8b5-abcde|web-6d9f7c8b5-fghij"`) {
		t.Errorf("queries = %s", qs)
	}
	for _, req := range []TimeseriesRequest{
		{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto"}},
		{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto", Name: "web"}, Range: "1s"},
	} {
		if _, err := e.Timeseries(context.Background(), req); err == nil {
			t.Errorf("%+v accepted", req)
		}
	}
}

// TestJobLabels: a Job is named k8s_job both by Prometheus' relabelling of
// its pods' own series and by the destination service's metric labels, so
// its outbound series name it dst_k8s_job ("job" is Prometheus' own label).
func TestJobLabels(t *testing.T) {
	for _, tc := range []struct{ kind, prom, dst string }{
		{KindDeployment, "deployment", "dst_deployment"},
		{KindStatefulSet, "statefulset", "dst_statefulset"},
		{KindDaemonSet, "daemonset", "dst_daemonset"},
		{KindJob, "k8s_job", "dst_k8s_job"},
		{KindPod, "pod", "dst_pod"},
		{KindNamespace, "namespace", "dst_namespace"},
	} {
		if got := promLabel(tc.kind); got != tc.prom {
			t.Errorf("promLabel(%s) = %q, want %q", tc.kind, got, tc.prom)
		}
		if got := dstLabel(tc.kind); got != tc.dst {
			t.Errorf("dstLabel(%s) = %q, want %q", tc.kind, got, tc.dst)
		}
	}

	yes := true
	job := func(name string) []runtime.Object {
		return []runtime.Object{
			&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "emojivoto"}},
			&corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name + "-x1", Namespace: "emojivoto",
					OwnerReferences: []metav1.OwnerReference{{Kind: "Job", Name: name, Controller: &yes}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning},
			},
		}
	}
	resp := func(v float64, kv ...string) promfake.Series {
		l := map[string]string{"namespace": "emojivoto", "direction": "outbound", "classification": "success", "tls": "true"}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return promfake.Series{Metric: "response_total", Labels: l, Value: v}
	}
	// web calls the backup Job's pod; backup calls the restore Job's.
	series := append(fixture.Series(),
		resp(3, "deployment", "web", "dst_namespace", "emojivoto", "dst_k8s_job", "backup", "authority", "backup.emojivoto.svc.cluster.local:80"),
		resp(2, "k8s_job", "backup", "dst_namespace", "emojivoto", "dst_k8s_job", "restore", "route", "POST /restore", "authority", "restore.emojivoto.svc.cluster.local:80"),
	)
	newJobEngine := func(t *testing.T) (*Engine, *promfake.Server) {
		p := promfake.New(series)
		t.Cleanup(p.Close)
		kc := fixture.Kube()
		for _, o := range append(job("backup"), job("restore")...) {
			if err := kc.Tracker().Add(o); err != nil {
				t.Fatal(err)
			}
		}
		return &Engine{Prom: &Prometheus{URL: p.URL}, Kube: kc}, p
	}
	backup := &Resource{Kind: KindJob, Namespace: "emojivoto", Name: "backup"}
	web := &Resource{Kind: KindDeployment, Namespace: "emojivoto", Name: "web"}
	for _, tc := range []struct {
		name  string
		run   func(e *Engine) (string, error)
		want  string
		query string
	}{
		{"stat deploy --to job/backup", func(e *Engine) (string, error) {
			rows, err := e.Stat(context.Background(), StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: "emojivoto", Name: "web"}, To: backup})
			if err != nil || len(rows) != 1 {
				return fmt.Sprint(rows), err
			}
			return rows[0].Name + " " + short(rows[0].RPS), nil
		}, "web 3", `dst_k8s_job="backup"`},
		{"stat job --from deploy/web", func(e *Engine) (string, error) {
			rows, err := e.Stat(context.Background(), StatRequest{Resource: Resource{Kind: KindJob, Namespace: "emojivoto"}, From: web})
			var got []string
			for _, r := range rows {
				got = append(got, r.Name+" "+short(r.RPS))
			}
			return strings.Join(got, ", "), err
		}, "backup 3, restore -", `sum by (dst_namespace, dst_k8s_job, classification, tls)`},
		{"edges job", func(e *Engine) (string, error) {
			edges, err := e.Edges(context.Background(), EdgesRequest{Resource: Resource{Kind: KindJob, Namespace: "emojivoto"}})
			var got []string
			for _, ed := range edges {
				got = append(got, fmt.Sprintf("%s -> %s %v", ed.Src.Name, ed.Dst.Name, ed.RPS))
			}
			return strings.Join(got, ", "), err
		}, "backup -> restore 2", `dst_k8s_job`},
		{"routes job/restore", func(e *Engine) (string, error) {
			routes, err := e.Routes(context.Background(), RoutesRequest{Resource: Resource{Kind: KindJob, Namespace: "emojivoto", Name: "restore"}})
			var got []string
			for _, r := range routes {
				got = append(got, r.Route+" "+short(r.RPS))
			}
			return strings.Join(got, ", "), err
		}, "POST /restore 2", `dst_k8s_job="restore"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, p := newJobEngine(t)
			got, err := tc.run(e)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			qs := strings.Join(p.Queries(), "\n")
			if !strings.Contains(qs, tc.query) || strings.Contains(qs, "dst_job") {
				t.Errorf("queries = %s\nwant %s and no dst_job", qs, tc.query)
			}
		})
	}
}

// TestSelectorValuesAreLiterals: a name or namespace from the request is
// matched literally, whatever it contains: a leading "~" must not turn its
// matcher into a regular expression, and quotes or backslashes must not
// end the PromQL string.
func TestSelectorValuesAreLiterals(t *testing.T) {
	ns := "emojivoto"
	for _, tc := range []struct {
		name    string
		req     StatRequest
		want    []string // in some query
		notWant []string // in no query
	}{
		{"to name starting with ~", StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: ns}, To: &Resource{Kind: KindDeployment, Namespace: ns, Name: "~.+"}},
			[]string{`dst_deployment="~.+"`}, []string{`dst_deployment=~`}},
		{"to namespace starting with ~", StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: ns}, To: &Resource{Kind: KindNamespace, Name: "~.*"}},
			[]string{`dst_namespace="~.*"`}, []string{`dst_namespace=~`}},
		{"from name starting with ~", StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: ns}, From: &Resource{Kind: KindDeployment, Namespace: "~.*", Name: "~.*"}},
			[]string{`deployment="~.*"`, `namespace="~.*"`}, []string{`=~".*"`}},
		{"quote and backslash", StatRequest{Resource: Resource{Kind: KindDeployment, Namespace: ns}, To: &Resource{Kind: KindDeployment, Namespace: ns, Name: `a", x="\`}},
			[]string{`dst_deployment="a\", x=\"\\"`}, []string{`x="\"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, p := newEngine(t)
			rows, err := e.Stat(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if r.RPS != nil {
					t.Errorf("row %s has traffic %v: the name matched other objects", r.Name, *r.RPS)
				}
			}
			qs := strings.Join(p.Queries(), "\n")
			for _, w := range tc.want {
				if !strings.Contains(qs, w) {
					t.Errorf("queries lack %s:\n%s", w, qs)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(qs, w) {
					t.Errorf("queries contain %s:\n%s", w, qs)
				}
			}
		})
	}
}

// TestServicePodsRegexpQuoted: a service's pods are matched with a regular
// expression of their names, each quoted (a dot in a pod name is a dot).
func TestServicePodsRegexpQuoted(t *testing.T) {
	p, err := (&Engine{}).plan(StatRequest{Resource: Resource{Kind: KindService, Namespace: "ns"}}, []*object{{
		key:  key{"ns", "svc"},
		pods: []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db.0"}}, {ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-1"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.sel.String(), `direction="inbound", namespace="ns", pod=~"db-1|db\\.0"`; got != want {
		t.Errorf("selector = %s, want %s", got, want)
	}
}
