package metricsapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Paths of the API.
const (
	PathStat   = "/api/v1/stat"
	PathEdges  = "/api/v1/edges"
	PathRoutes = "/api/v1/routes"
	PathCheck  = "/api/v1/check"
	PathSeries = "/api/v1/timeseries"
)

// Backend answers the queries (a *metrics.Engine).
type Backend interface {
	Stat(context.Context, metrics.StatRequest) ([]metrics.StatRow, error)
	Edges(context.Context, metrics.EdgesRequest) ([]metrics.Edge, error)
	Routes(context.Context, metrics.RoutesRequest) ([]metrics.RouteRow, error)
	Scrapes(context.Context) (metrics.ScrapeStatus, error)
	Timeseries(context.Context, metrics.TimeseriesRequest) (metrics.Timeseries, error)
}

// StatResponse is the body of a stat answer.
type StatResponse struct {
	Rows []metrics.StatRow `json:"rows"`
}

// EdgesResponse is the body of an edges answer.
type EdgesResponse struct {
	Edges []metrics.Edge `json:"edges"`
}

// RoutesResponse is the body of a routes answer.
type RoutesResponse struct {
	Routes []metrics.RouteRow `json:"routes"`
}

// CheckResponse is the body of a check answer.
type CheckResponse struct {
	Scrapes metrics.ScrapeStatus `json:"scrapes"`
}

// ErrorResponse is the body of any non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// Handler serves the API from b; /ready and /live answer 200.
func Handler(b Backend, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }
	mux.HandleFunc("GET /ready", ok)
	mux.HandleFunc("GET /live", ok)
	mux.HandleFunc("GET "+PathStat, func(w http.ResponseWriter, r *http.Request) {
		req, err := statRequestFromQuery(r.URL.Query())
		if err != nil {
			reply(w, log, nil, err)
			return
		}
		rows, err := b.Stat(r.Context(), req)
		reply(w, log, StatResponse{Rows: rows}, err)
	})
	mux.HandleFunc("GET "+PathEdges, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		res, err := parseResource(q.Get("resource"), q.Get("namespace"))
		if err != nil {
			reply(w, log, nil, err)
			return
		}
		edges, err := b.Edges(r.Context(), metrics.EdgesRequest{Resource: res, AllNamespaces: q.Get("all") == "true", Window: q.Get("window")})
		reply(w, log, EdgesResponse{Edges: edges}, err)
	})
	mux.HandleFunc("GET "+PathRoutes, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		res, err := parseResource(q.Get("resource"), q.Get("namespace"))
		if err != nil {
			reply(w, log, nil, err)
			return
		}
		routes, err := b.Routes(r.Context(), metrics.RoutesRequest{Resource: res, Window: q.Get("window")})
		reply(w, log, RoutesResponse{Routes: routes}, err)
	})
	mux.HandleFunc("GET "+PathSeries, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		res, err := parseResource(q.Get("resource"), q.Get("namespace"))
		if err != nil {
			reply(w, log, nil, err)
			return
		}
		ts, err := b.Timeseries(r.Context(), metrics.TimeseriesRequest{Resource: res, Window: q.Get("window"), Range: q.Get("range")})
		reply(w, log, ts, err)
	})
	mux.HandleFunc("GET "+PathCheck, func(w http.ResponseWriter, r *http.Request) {
		s, err := b.Scrapes(r.Context())
		reply(w, log, CheckResponse{Scrapes: s}, err)
	})
	return mux
}

func parseResource(s, ns string) (metrics.Resource, error) {
	return metrics.ParseResource([]string{s}, ns)
}

func statRequestFromQuery(q url.Values) (metrics.StatRequest, error) {
	res, err := metrics.ParseResource([]string{q.Get("resource")}, q.Get("namespace"))
	if err != nil {
		return metrics.StatRequest{}, err
	}
	req := metrics.StatRequest{Resource: res, AllNamespaces: q.Get("all") == "true", Window: q.Get("window")}
	for _, p := range []struct {
		param string
		dst   **metrics.Resource
	}{{"from", &req.From}, {"to", &req.To}} {
		if v := q.Get(p.param); v != "" {
			r, err := metrics.ParseResource([]string{v}, q.Get(p.param+"Namespace"))
			if err != nil {
				return metrics.StatRequest{}, err
			}
			*p.dst = &r
		}
	}
	return req, nil
}

// StatQuery encodes req as the query of a stat call.
func StatQuery(req metrics.StatRequest) url.Values {
	q := url.Values{"resource": {req.Resource.String()}, "namespace": {req.Resource.Namespace}}
	if req.AllNamespaces {
		q.Set("all", "true")
	}
	if req.Window != "" {
		q.Set("window", req.Window)
	}
	if req.From != nil {
		q.Set("from", req.From.String())
		q.Set("fromNamespace", req.From.Namespace)
	}
	if req.To != nil {
		q.Set("to", req.To.String())
		q.Set("toNamespace", req.To.Namespace)
	}
	return q
}

func reply(w http.ResponseWriter, log *slog.Logger, body any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusBadGateway
		var bad *metrics.BadRequestError
		switch {
		case errors.As(err, &bad):
			code = http.StatusBadRequest
		case apierrors.IsNotFound(err):
			code = http.StatusNotFound
		default:
			log.Warn("query failed", "err", err)
		}
		w.WriteHeader(code)
		body = ErrorResponse{Error: err.Error()}
	}
	if err := json.NewEncoder(w).Encode(body); err != nil {
		log.Debug("writing response", "err", err)
	}
}
