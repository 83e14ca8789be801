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

// Querier runs instant PromQL queries.
type Querier interface {
	Query(ctx context.Context, q string) ([]Sample, error)
}

// Prometheus queries a Prometheus server's HTTP API (/api/v1/query).
type Prometheus struct {
	URL  string       // e.g. http://prometheus.conduit-viz.svc.cluster.local:9090
	HTTP *http.Client // nil: a client with a 30 s timeout
	Now  func() time.Time
}

// Query runs q at now and returns its vector; NaN samples are dropped.
func (p *Prometheus) Query(ctx context.Context, q string) ([]Sample, error) {
	hc := p.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	form := url.Values{"query": {q}}
	if p.Now != nil {
		form.Set("time", strconv.FormatFloat(float64(p.Now().UnixMilli())/1000, 'f', 3, 64))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(p.URL, "/")+"/api/v1/query", strings.NewReader(form.Encode()))
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
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("metrics: prometheus answered %s with a body that is not its API's JSON: %w", resp.Status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("metrics: prometheus query %q failed: %s: %s", q, r.ErrorType, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("metrics: prometheus query %q returned a %s, want a vector", q, r.Data.ResultType)
	}
	out := make([]Sample, 0, len(r.Data.Result))
	for _, e := range r.Data.Result {
		s, _ := e.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: prometheus sample value %q: %w", s, err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		out = append(out, Sample{Labels: e.Metric, Value: v})
	}
	return out, nil
}
