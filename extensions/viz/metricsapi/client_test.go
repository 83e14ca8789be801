package metricsapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
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
