package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"github.com/conduit-mesh/conduit/extensions/viz/metricsapi"
)

//go:embed templates/*.html templates/style.css
var assets embed.FS

// API is what the dashboard reads (the metrics API client).
type API interface {
	Stat(context.Context, metrics.StatRequest) ([]metrics.StatRow, error)
	Edges(context.Context, metrics.EdgesRequest) ([]metrics.Edge, error)
	Routes(context.Context, metrics.RoutesRequest) ([]metrics.RouteRow, error)
	Timeseries(context.Context, metrics.TimeseriesRequest) (metrics.Timeseries, error)
}

// workloadKinds are the kinds a namespace page lists, in order.
var workloadKinds = []struct{ Kind, Title string }{
	{metrics.KindDeployment, "Deployments"},
	{metrics.KindStatefulSet, "StatefulSets"},
	{metrics.KindDaemonSet, "DaemonSets"},
	{metrics.KindJob, "Jobs"},
}

var funcs = template.FuncMap{
	"pct": func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f%%", *v*100)
	},
	"rps": func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f", *v)
	},
	"ms": func(v *float64) string {
		if v == nil {
			return "-"
		}
		if *v < 10 {
			return fmt.Sprintf("%.1f ms", *v)
		}
		return fmt.Sprintf("%.0f ms", *v)
	},
	"num": func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.0f", *v)
	},
	// health classes a success rate for colouring.
	"health": func(v *float64) string {
		switch {
		case v == nil:
			return "idle"
		case *v >= 0.99:
			return "good"
		case *v >= 0.9:
			return "warn"
		}
		return "bad"
	},
	"fixed1": func(v float64) string { return fmt.Sprintf("%.1f", v) },
}

// Server is the dashboard.
type Server struct {
	api          API
	log          *slog.Logger
	tmpl         *template.Template
	mux          *http.ServeMux
	allowedHosts map[string]bool
}

// New returns the dashboard over api. It answers requests for localhost
// (and *.localhost), for an IP address, and for allowedHosts (host names,
// without port); any other Host header is refused, so that a web page
// whose name is rebound to 127.0.0.1 cannot read a port-forwarded dashboard.
func New(api API, log *slog.Logger, allowedHosts ...string) *Server {
	s := &Server{api: api, log: log, mux: http.NewServeMux(), allowedHosts: map[string]bool{}}
	for _, h := range allowedHosts {
		if h = normalizeHost(h); h != "" {
			s.allowedHosts[h] = true
		}
	}
	s.tmpl = template.Must(template.New("").Funcs(funcs).ParseFS(assets, "templates/*.html"))
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }
	s.mux.HandleFunc("GET /ready", ok)
	s.mux.HandleFunc("GET /live", ok)
	s.mux.HandleFunc("GET /static/style.css", func(w http.ResponseWriter, _ *http.Request) {
		b, _ := assets.ReadFile("templates/style.css")
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(b)
	})
	s.mux.HandleFunc("GET /{$}", s.namespaces)
	s.mux.HandleFunc("GET /namespaces/{ns}", s.namespace)
	s.mux.HandleFunc("GET /namespaces/{ns}/{kind}/{name}", s.workload)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if !s.hostAllowed(r.Host) {
		s.log.Warn("request for a host name that is not allowed refused", "host", r.Host)
		http.Error(w, fmt.Sprintf("dashboard: host %q is not allowed (DNS rebinding protection): open the dashboard as localhost or by IP address, "+
			"or allow this name with viz-controller web --allowed-hosts (mesh viz install --set dashboard.allowedHosts=...)", r.Host), http.StatusForbidden)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// normalizeHost returns the host name of a Host header, without port,
// brackets or trailing dot, lower-cased.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// hostAllowed tells whether the dashboard answers requests for host.
func (s *Server) hostAllowed(host string) bool {
	if host == "" {
		return true // HTTP/1.0 without Host: not a browser
	}
	h := normalizeHost(host)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") || s.allowedHosts[h] {
		return true
	}
	_, err := netip.ParseAddr(h)
	return err == nil
}

type crumb struct{ Name, Href string }

type page struct {
	Title  string
	Crumbs []crumb
	Window string
	Error  string
	Data   any
}

func (s *Server) render(w http.ResponseWriter, name string, p page, code int) {
	var b bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&b, name, p); err != nil {
		s.log.Error("rendering", "template", name, "err", err)
		http.Error(w, "dashboard: rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

func window(r *http.Request) (string, error) {
	w := r.URL.Query().Get("window")
	if w == "" {
		w = "1m"
	}
	_, err := metrics.ParseWindow(w)
	return w, err
}

func (s *Server) fail(w http.ResponseWriter, p page, err error) {
	code := http.StatusBadGateway
	var apiErr *metricsapi.APIError
	var bad *metrics.BadRequestError
	switch {
	case errors.As(err, &apiErr):
		code = apiErr.Code
	case errors.As(err, &bad):
		code = http.StatusBadRequest
	}
	p.Error = err.Error()
	s.render(w, "error.html", p, code)
}

func (s *Server) namespaces(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Namespaces", Crumbs: []crumb{{"Namespaces", "/"}}}
	win, err := window(r)
	if err != nil {
		s.fail(w, p, err)
		return
	}
	p.Window = win
	rows, err := s.api.Stat(r.Context(), metrics.StatRequest{Resource: metrics.Resource{Kind: metrics.KindNamespace}, Window: win})
	if err != nil {
		s.fail(w, p, err)
		return
	}
	p.Data = rows
	s.render(w, "namespaces.html", p, http.StatusOK)
}

type section struct {
	Title, Kind string
	Rows        []metrics.StatRow
}

func (s *Server) namespace(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	p := page{Title: "Namespace " + ns, Crumbs: []crumb{{"Namespaces", "/"}, {ns, "/namespaces/" + ns}}}
	win, err := window(r)
	if err != nil {
		s.fail(w, p, err)
		return
	}
	p.Window = win
	var sections []section
	for _, k := range workloadKinds {
		rows, err := s.api.Stat(r.Context(), metrics.StatRequest{Resource: metrics.Resource{Kind: k.Kind, Namespace: ns}, Window: win})
		if err != nil {
			s.fail(w, p, err)
			return
		}
		if len(rows) > 0 {
			sections = append(sections, section{Title: k.Title, Kind: k.Kind, Rows: rows})
		}
	}
	p.Data = sections
	s.render(w, "namespace.html", p, http.StatusOK)
}

type workloadData struct {
	Kind, Name, Namespace string
	Stat                  metrics.StatRow
	Inbound               []metrics.StatRow // per source workload (--from)
	Edges                 []metrics.Edge
	Routes                []metrics.RouteRow
	RoutesError           string
	Charts                []chart
	ChartsError           string
}

func (s *Server) workload(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	kind, err := metrics.ParseKind(r.PathValue("kind"))
	p := page{Title: r.PathValue("kind") + "/" + name, Crumbs: []crumb{{"Namespaces", "/"}, {ns, "/namespaces/" + ns}, {r.PathValue("kind") + "/" + name, r.URL.Path}}}
	if err != nil {
		s.fail(w, p, err)
		return
	}
	win, err := window(r)
	if err != nil {
		s.fail(w, p, err)
		return
	}
	p.Window = win
	res := metrics.Resource{Kind: kind, Namespace: ns, Name: name}
	rows, err := s.api.Stat(r.Context(), metrics.StatRequest{Resource: res, Window: win})
	if err != nil {
		s.fail(w, p, err)
		return
	}
	d := workloadData{Kind: kind, Name: name, Namespace: ns}
	if len(rows) > 0 {
		d.Stat = rows[0]
	}
	if kind != metrics.KindService && kind != metrics.KindNamespace {
		if d.Edges, err = s.api.Edges(r.Context(), metrics.EdgesRequest{Resource: res, Window: win}); err != nil {
			s.fail(w, p, err)
			return
		}
	}
	if d.Routes, err = s.api.Routes(r.Context(), metrics.RoutesRequest{Resource: res, Window: win}); err != nil {
		d.RoutesError = err.Error()
	}
	if ts, err := s.api.Timeseries(r.Context(), metrics.TimeseriesRequest{Resource: res, Window: win}); err != nil {
		d.ChartsError = err.Error()
	} else {
		d.Charts = charts(ts)
	}
	p.Data = d
	s.render(w, "workload.html", p, http.StatusOK)
}
