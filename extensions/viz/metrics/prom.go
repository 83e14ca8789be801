package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Series is one element of a range matrix.
type Series struct {
	Labels map[string]string
	Points []Point
}

// Point is a value at a time.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// Querier runs instant PromQL queries.
type Querier interface {
	Query(ctx context.Context, q string) ([]Sample, error)
}

// RangeQuerier also runs range queries (for charts over time).
type RangeQuerier interface {
	QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error)
}

// Prometheus queries a Prometheus server's HTTP API (/api/v1/query and /api/v1/query_range).
type Prometheus struct {
	URL  string       // e.g. http://prometheus.conduit-viz.svc.cluster.local:9090
	HTTP *http.Client // nil: a client with a 30 s timeout
	Now  func() time.Time
}

func promTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

type promValue [2]any

func (v promValue) parse() (time.Time, float64, bool, error) {
	ts, _ := v[0].(float64)
	s, _ := v[1].(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, 0, false, fmt.Errorf("metrics: prometheus sample value %q: %w", s, err)
	}
	t := time.UnixMilli(int64(math.Round(ts * 1000))).UTC()
	return t, f, !math.IsNaN(f) && !math.IsInf(f, 0), nil
}

type promResult struct {
	Metric map[string]string `json:"metric"`
	Value  promValue         `json:"value"`
	Values []promValue       `json:"values"`
}

func (p *Prometheus) call(ctx context.Context, path string, form url.Values, q, want string) ([]promResult, error) {
	hc := p.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(p.URL, "/")+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("metrics: prometheus request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: querying prometheus at %s: %w", p.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("metrics: reading prometheus response: %w", err)
	}
	var r struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string       `json:"resultType"`
			Result     []promResult `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("metrics: prometheus answered %s with a body that is not its API's JSON: %w", resp.Status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("metrics: prometheus query %q failed: %s: %s", q, r.ErrorType, r.Error)
	}
	if r.Data.ResultType != want {
		return nil, fmt.Errorf("metrics: prometheus query %q returned a %s, want a %s", q, r.Data.ResultType, want)
	}
	return r.Data.Result, nil
}

// Query runs q at now and returns its vector; NaN samples are dropped.
func (p *Prometheus) Query(ctx context.Context, q string) ([]Sample, error) {
	form := url.Values{"query": {q}}
	if p.Now != nil {
		form.Set("time", promTime(p.Now()))
	}
	res, err := p.call(ctx, "/api/v1/query", form, q, "vector")
	if err != nil {
		return nil, err
	}
	out := make([]Sample, 0, len(res))
	for _, e := range res {
		_, v, ok, err := e.Value.parse()
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Sample{Labels: e.Metric, Value: v})
		}
	}
	return out, nil
}

// QueryRange runs q from start to end every step; NaN points are dropped.
func (p *Prometheus) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error) {
	form := url.Values{"query": {q}, "start": {promTime(start)}, "end": {promTime(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	res, err := p.call(ctx, "/api/v1/query_range", form, q, "matrix")
	if err != nil {
		return nil, err
	}
	out := make([]Series, 0, len(res))
	for _, e := range res {
		s := Series{Labels: e.Metric}
		for _, v := range e.Values {
			t, f, ok, err := v.parse()
			if err != nil {
				return nil, err
			}
			if ok {
				s.Points = append(s.Points, Point{t, f})
			}
		}
		out = append(out, s)
	}
	return out, nil
}
