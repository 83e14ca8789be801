package web

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/extensions/viz/internal/fixture"
	"github.com/conduit-mesh/conduit/extensions/viz/internal/promfake"
	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"github.com/conduit-mesh/conduit/extensions/viz/metricsapi"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// dashboard serves the dashboard over the metrics API over the fixture.
func dashboard(t *testing.T) *httptest.Server {
	t.Helper()
	prom := promfake.New(fixture.Series())
	t.Cleanup(prom.Close)
	log := slog.New(slog.DiscardHandler)
	eng := &metrics.Engine{Prom: &metrics.Prometheus{URL: prom.URL}, Kube: fixture.Kube(), Dynamic: fixture.Dynamic()}
	api := httptest.NewServer(metricsapi.Handler(eng, log))
	t.Cleanup(api.Close)
	srv := httptest.NewServer(New(metricsapi.NewHTTPClient(api.URL, nil), log))
	t.Cleanup(srv.Close)
	return srv
}

func TestPages(t *testing.T) {
	srv := dashboard(t)
	for _, tc := range []struct {
		path, golden string
		code         int
		contains     []string
	}{
		{"/", "namespaces.html", 200, []string{`href="/namespaces/emojivoto"`, "93.75%"}},
		{"/namespaces/emojivoto", "namespace.html", 200, []string{`href="/namespaces/emojivoto/deployment/web"`, "StatefulSets", "redis"}},
		// web's only client is not meshed: no route is measured for it.
		{"/namespaces/emojivoto/deployment/web?window=5m", "workload_web.html", 200, []string{fixture.WebID, fixture.EmojiID, "mTLS", "No route traffic from meshed clients", "window 5m"}},
		// emoji's routes, as web's proxy measured them.
		{"/namespaces/emojivoto/deployment/emoji", "workload_emoji.html", 200, []string{"<td>ListAll</td><td>" + fixture.EmojiAuthority + "</td>", "<td>[DEFAULT]</td>"}},
		{"/namespaces/emojivoto/deploy/nope", "", 404, []string{`deployment &#34;nope&#34; not found`}},
		{"/namespaces/emojivoto/cronjob/x", "", 400, []string{"unknown resource type"}},
		{"/?window=1ms", "", 400, []string{"out of range"}},
		{"/nothing/here", "", 404, nil},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status = %d, want %d\n%s", resp.StatusCode, tc.code, b)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("CSP = %q", csp)
			}
			for _, want := range tc.contains {
				if !strings.Contains(string(b), want) {
					t.Errorf("page lacks %q:\n%s", want, b)
				}
			}
			if tc.golden != "" {
				golden(t, tc.golden, string(b))
			}
		})
	}
	resp, err := http.Get(srv.URL + "/static/style.css")
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("style.css: %v %v", resp, err)
	}
	resp.Body.Close()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		_ = os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (go test -update, then review):\n%s", name, got)
	}
}

// TestHostCheck: the dashboard is reached through a port-forward to
// localhost, so a page of another site that rebinds its DNS name to
// 127.0.0.1 must not read it: only localhost, IP addresses and the names
// given to New are served.
func TestHostCheck(t *testing.T) {
	srv := httptest.NewServer(New(nil, slog.New(slog.DiscardHandler), "dashboard.example.com"))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		host string
		code int
	}{
		{"localhost:50750", 200},
		{"LOCALHOST.:50750", 200},
		{"viz.localhost:50750", 200},
		{"127.0.0.1:50750", 200},
		{"[::1]:50750", 200},
		{"10.42.0.7:8084", 200}, // the kubelet's probes, the pod's IP
		{"dashboard.example.com", 200},
		{"evil.example.com:50750", 403},
		{"localhost.evil.example.com:50750", 403},
		{"127.0.0.1.nip.io:50750", 403},
	} {
		t.Run(tc.host, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/static/style.css", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.code, b)
			}
			if tc.code == 403 && !strings.Contains(string(b), "--allowed-hosts") {
				t.Errorf("refusal does not say how to allow the host: %s", b)
			}
		})
	}
}
