package metricsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
)

// Service names the metrics API's Service in the viz namespace.
const (
	ServiceName = "metrics-api"
	ServicePort = "8085"
)

// getter performs a GET of path?query and returns the status and body.
type getter func(ctx context.Context, path string, query url.Values) (int, []byte, error)

// Client calls the metrics API.
type Client struct {
	get  getter
	desc string // where the API is, for errors
	// viaAPIServer: calls go through the Kubernetes API server's service
	// proxy, so that a call without an answer is the API server's failure.
	viaAPIServer bool
}

// NewHTTPClient calls the API at base (e.g. http://metrics-api.conduit-viz.svc:8085).
func NewHTTPClient(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	base = strings.TrimRight(base, "/")
	return &Client{desc: base, get: func(ctx context.Context, path string, q url.Values) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+q.Encode(), nil)
		if err != nil {
			return 0, nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
		return resp.StatusCode, b, err
	}}
}

// NewKubeClient calls the API through the Kubernetes API server's service
// proxy (the user needs `get services/proxy` in namespace).
func NewKubeClient(kc kubernetes.Interface, namespace string) *Client {
	return &Client{desc: fmt.Sprintf("service %s/%s", namespace, ServiceName), viaAPIServer: true, get: func(ctx context.Context, path string, q url.Values) (int, []byte, error) {
		r := kc.CoreV1().RESTClient().Get().Namespace(namespace).Resource("services").
			Name("http:" + ServiceName + ":" + ServicePort).SubResource("proxy").Suffix(path)
		for k, vs := range q {
			for _, v := range vs {
				r = r.Param(k, v)
			}
		}
		res := r.Do(ctx)
		var code int
		res.StatusCode(&code)
		body, err := res.Raw()
		if code == 0 && err != nil {
			// client-go keeps no status code for an error answer it cannot
			// decode (text/plain: "no endpoints available ..."), only a
			// Status made from it: an answer all the same.
			var st apierrors.APIStatus
			if errors.As(err, &st) && st.Status().Code != 0 {
				s := st.Status()
				msg := s.Message
				if s.Details != nil && len(s.Details.Causes) > 0 && s.Details.Causes[0].Message != "" {
					msg = s.Details.Causes[0].Message
				}
				return int(s.Code), []byte(msg), nil
			}
			return 0, nil, err
		}
		return code, body, nil
	}}
}

func (c *Client) call(ctx context.Context, path string, q url.Values, out any) error {
	code, body, err := c.get(ctx, path, q)
	if err != nil && c.viaAPIServer {
		// No answer at all: the API server (or the network to it) failed,
		// before anything of viz was asked; whether viz is installed is unknown.
		return fmt.Errorf("metricsapi: calling the metrics API (%s) through the Kubernetes API server: %w", c.desc, err)
	}
	if err != nil {
		return fmt.Errorf("metricsapi: calling the metrics API (%s): %w (is viz installed? run 'mesh viz check')", c.desc, err)
	}
	if code/100 != 2 {
		var e ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return &APIError{Code: code, Message: e.Error}
		}
		var st struct {
			Kind, Message, Reason string
		}
		if json.Unmarshal(body, &st) == nil && st.Kind == "Status" && st.Message != "" {
			hint := "is viz installed and ready? run 'mesh viz check'"
			switch st.Reason {
			case "Forbidden":
				hint = "reading viz metrics needs 'get services/proxy' on " + c.desc
			case "Unauthorized":
				hint = "the Kubernetes API server refused your credentials: check your kubeconfig context's user"
			}
			return fmt.Errorf("metricsapi: %s (%s)", st.Message, hint)
		}
		msg := strings.TrimSpace(string(body))
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return fmt.Errorf("metricsapi: the metrics API (%s) answered %d: %s (is viz installed and ready? run 'mesh viz check')", c.desc, code, msg)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("metricsapi: decoding the answer of %s: %w", path, err)
	}
	return nil
}

// APIError is an error the metrics API answered with.
type APIError struct {
	Code    int // HTTP status: 400 bad request, 404 not found, 502 Prometheus failed
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Stat calls the stat query.
func (c *Client) Stat(ctx context.Context, req metrics.StatRequest) ([]metrics.StatRow, error) {
	var r StatResponse
	return r.Rows, c.call(ctx, PathStat, StatQuery(req), &r)
}

// Edges calls the edges query.
func (c *Client) Edges(ctx context.Context, req metrics.EdgesRequest) ([]metrics.Edge, error) {
	q := url.Values{"resource": {req.Resource.String()}, "namespace": {req.Resource.Namespace}, "window": {req.Window}}
	if req.AllNamespaces {
		q.Set("all", "true")
	}
	var r EdgesResponse
	return r.Edges, c.call(ctx, PathEdges, q, &r)
}

// Routes calls the routes query.
func (c *Client) Routes(ctx context.Context, req metrics.RoutesRequest) ([]metrics.RouteRow, error) {
	q := url.Values{"resource": {req.Resource.String()}, "namespace": {req.Resource.Namespace}, "window": {req.Window}}
	var r RoutesResponse
	return r.Routes, c.call(ctx, PathRoutes, q, &r)
}

// Scrapes calls the check query.
func (c *Client) Scrapes(ctx context.Context) (metrics.ScrapeStatus, error) {
	var r CheckResponse
	return r.Scrapes, c.call(ctx, PathCheck, url.Values{}, &r)
}

// Timeseries calls the charts query.
func (c *Client) Timeseries(ctx context.Context, req metrics.TimeseriesRequest) (metrics.Timeseries, error) {
	q := url.Values{"resource": {req.Resource.String()}, "namespace": {req.Resource.Namespace}, "window": {req.Window}, "range": {req.Range}}
	var r metrics.Timeseries
	return r, c.call(ctx, PathSeries, q, &r)
}
