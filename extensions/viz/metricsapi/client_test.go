package metricsapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestClientErrors(t *testing.T) {
	for _, tc := range []struct {
		code       int
		body, want string
		apiCode    int
	}{
		{400, `{"error":"metrics: window \"x\": bad"}`, `window "x"`, 400},
		{404, `{"error":"deployment \"nope\" not found"}`, "not found", 404},
		{403, `{"kind":"Status","message":"services \"http:metrics-api:8085\" is forbidden","reason":"Forbidden"}`, "needs 'get services/proxy'", 0},
		{503, `no endpoints available for service "metrics-api"`, "answered 503: no endpoints", 0},
		{200, `not json`, "decoding the answer", 0},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tc.code)
			_, _ = w.Write([]byte(tc.body))
		}))
		_, err := NewHTTPClient(srv.URL, nil).Stat(context.Background(), metrics.StatRequest{Resource: metrics.Resource{Kind: "deployment", Namespace: "ns"}})
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d %s: err = %v, want %q", tc.code, tc.body, err, tc.want)
			continue
		}
		var apiErr *APIError
		if got := errors.As(err, &apiErr); got != (tc.apiCode != 0) || (got && apiErr.Code != tc.apiCode) {
			t.Errorf("%d: APIError = %v", tc.code, apiErr)
		}
	}
	_, err := NewHTTPClient("http://127.0.0.1:1", nil).Scrapes(context.Background())
	if err == nil || !strings.Contains(err.Error(), "mesh viz check") {
		t.Errorf("unreachable API: %v", err)
	}
}

func TestStatQueryRoundTrip(t *testing.T) {
	req := metrics.StatRequest{
		Resource: metrics.Resource{Kind: "deployment", Namespace: "a", Name: "web"}, AllNamespaces: true, Window: "5m",
		From: &metrics.Resource{Kind: "deployment", Namespace: "b", Name: "x"},
	}
	got, err := statRequestFromQuery(StatQuery(req))
	if err != nil {
		t.Fatal(err)
	}
	if got.Resource != req.Resource || !got.AllNamespaces || got.Window != "5m" || got.From == nil || *got.From != *req.From || got.To != nil {
		t.Errorf("round trip = %+v", got)
	}
}

// TestKubeClientErrors: through the API server's service proxy, "is viz
// installed?" is suggested when the API server answered that viz's metrics
// API is not there or not ready, not when the API server did not answer
// (it was, and the user looked for viz when the cluster was down).
func TestKubeClientErrors(t *testing.T) {
	const hint = "is viz installed and ready? run 'mesh viz check'"
	for _, tc := range []struct {
		name        string
		contentType string
		code        int
		body        string // "": no API server
		want        string
		wantHint    bool
	}{
		{"no API server", "", 0, "", "metricsapi: calling the metrics API (service viz-x/metrics-api) through the Kubernetes API server: Get ", false},
		{"no endpoints (text)", "text/plain", 503, `no endpoints available for service "metrics-api"`,
			`metricsapi: the metrics API (service viz-x/metrics-api) answered 503: no endpoints available for service "metrics-api"`, true},
		{"service not found", "application/json", 404,
			`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"services \"metrics-api\" not found","reason":"NotFound","code":404}`,
			`metricsapi: services "metrics-api" not found`, true},
		{"forbidden", "application/json", 403,
			`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"services \"http:metrics-api:8085\" is forbidden","reason":"Forbidden","code":403}`,
			"needs 'get services/proxy' on service viz-x/metrics-api", false},
		{"unauthorized", "application/json", 401,
			`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`,
			"refused your credentials", false},
		{"viz answers", "application/json", 400, `{"error":"metrics: window \"x\": bad"}`, `metrics: window "x": bad`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.code)
				_, _ = w.Write([]byte(tc.body))
			}))
			if tc.body == "" {
				srv.Close()
			} else {
				defer srv.Close()
			}
			kc, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			_, err = NewKubeClient(kc, "viz-x").Stat(context.Background(), metrics.StatRequest{Resource: metrics.Resource{Kind: "deployment", Namespace: "ns"}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant %q", err, tc.want)
			}
			if got := strings.Contains(err.Error(), hint); got != tc.wantHint {
				t.Errorf("hint %q in the error: %v, want %v", hint, got, tc.wantHint)
			}
		})
	}
}
