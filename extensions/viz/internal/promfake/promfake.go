// Package promfake is a fake Prometheus HTTP API for tests: it evaluates the
// one query shape the viz extension sends — sum by (labels) of an optionally
// rate()d selector — over a fixed set of series, and records every query.
package promfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Series is one time series; Value is the rate of a counter or a gauge's value.
type Series struct {
	Metric string
	Labels map[string]string
	Value  float64
}

// Server is the fake Prometheus.
type Server struct {
	*httptest.Server
	mu      sync.Mutex
	series  []Series
	queries []string
}

// New starts a fake Prometheus serving series.
func New(series []Series) *Server {
	s := &Server{series: series}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Queries returns the queries received so far.
func (s *Server) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

var (
	queryRE   = regexp.MustCompile(`^sum by \(([^)]*)\) \((?:rate\()?([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}(?:\[\d+s\]\))?\)$`)
	matcherRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)(=~|!=|=)("(?:[^"\\]|\\.)*")`)
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	q := r.FormValue("query")
	s.mu.Lock()
	s.queries = append(s.queries, q)
	s.mu.Unlock()
	res, err := s.eval(q)
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "error", "errorType": "bad_data", "error": err.Error()})
		return
	}
	if r.URL.Path == "/api/v1/query_range" {
		// A range query: every series is constant over [start, end].
		start, err1 := strconv.ParseFloat(r.FormValue("start"), 64)
		end, err2 := strconv.ParseFloat(r.FormValue("end"), 64)
		step, err3 := strconv.ParseFloat(r.FormValue("step"), 64)
		if err1 != nil || err2 != nil || err3 != nil || step <= 0 || end < start {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "error", "errorType": "bad_data", "error": "bad start, end or step"})
			return
		}
		for _, e := range res {
			v := e["value"].([]any)[1]
			var values [][]any
			for t := start; t <= end; t += step {
				values = append(values, []any{t, v})
			}
			delete(e, "value")
			e["values"] = values
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "matrix", "result": res}})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": res}})
}

func (s *Server) eval(q string) ([]map[string]any, error) {
	m := queryRE.FindStringSubmatch(q)
	if m == nil {
		return nil, fmt.Errorf("promfake: unsupported query %q", q)
	}
	var by []string
	for _, l := range strings.Split(m[1], ",") {
		by = append(by, strings.TrimSpace(l))
	}
	type matcher struct {
		name, op string
		re       *regexp.Regexp
		val      string
	}
	var ms []matcher
	for _, mm := range matcherRE.FindAllStringSubmatch(m[3], -1) {
		v, err := strconv.Unquote(mm[3])
		if err != nil {
			return nil, err
		}
		mt := matcher{name: mm[1], op: mm[2], val: v}
		if mt.op == "=~" {
			mt.re = regexp.MustCompile("^(?:" + v + ")$")
		}
		ms = append(ms, mt)
	}
	sums := map[string]float64{}
	lbls := map[string]map[string]string{}
	for _, se := range s.series {
		if se.Metric != m[2] {
			continue
		}
		ok := true
		for _, mt := range ms {
			v := se.Labels[mt.name]
			switch mt.op {
			case "=":
				ok = ok && v == mt.val
			case "!=":
				ok = ok && v != mt.val
			case "=~":
				ok = ok && mt.re.MatchString(v)
			}
		}
		if !ok {
			continue
		}
		g := map[string]string{}
		var k []string
		for _, l := range by {
			if v := se.Labels[l]; v != "" {
				g[l] = v
			}
			k = append(k, l+"="+se.Labels[l])
		}
		ks := strings.Join(k, ",")
		sums[ks] += se.Value
		lbls[ks] = g
	}
	keys := make([]string, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []map[string]any{}
	for _, k := range keys {
		out = append(out, map[string]any{"metric": lbls[k], "value": []any{1700000000.0, strconv.FormatFloat(sums[k], 'g', -1, 64)}})
	}
	return out, nil
}
