package metrics

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// TimeseriesRequest asks for the golden metrics of one resource over time.
type TimeseriesRequest struct {
	Resource Resource `json:"resource"`
	Window   string   `json:"window,omitempty"` // rate window of each point (default 1m)
	Range    string   `json:"range,omitempty"`  // how far back (default 30m, at most 24h)
}

// Timeseries is the golden metrics of a resource over time, 60 points at most.
type Timeseries struct {
	Step        time.Duration `json:"step"`
	RPS         []Point       `json:"rps"`
	SuccessRate []Point       `json:"successRate"`
	LatencyP95  []Point       `json:"latencyP95Ms"`
}

// Timeseries computes the request rate, success rate and p95 latency of the
// inbound traffic of one resource over the last Range.
func (e *Engine) Timeseries(ctx context.Context, req TimeseriesRequest) (Timeseries, error) {
	window, err := ParseWindow(req.Window)
	if err != nil {
		return Timeseries{}, err
	}
	rng := 30 * time.Minute
	if req.Range != "" {
		if rng, err = time.ParseDuration(req.Range); err != nil || rng < time.Minute || rng > 24*time.Hour {
			return Timeseries{}, badRequest("range %q must be a duration between 1m and 24h", req.Range)
		}
	}
	r := req.Resource
	if r.Name == "" {
		return Timeseries{}, badRequest("charts are drawn for one resource (e.g. deploy/web), not %s", r)
	}
	rq, ok := e.Prom.(RangeQuerier)
	if !ok {
		return Timeseries{}, fmt.Errorf("metrics: this Prometheus client cannot run range queries")
	}
	objs, err := objects(ctx, e.Kube, r, false)
	if err != nil {
		return Timeseries{}, err
	}
	p, err := e.plan(StatRequest{Resource: r}, objs)
	if err != nil {
		return Timeseries{}, err
	}
	step := max((rng / 60).Round(time.Second), 10*time.Second)
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	end := now().Truncate(step)
	start := end.Add(-rng)
	out := Timeseries{Step: step, RPS: []Point{}, SuccessRate: []Point{}, LatencyP95: []Point{}}
	if p.rowOf == nil {
		return out, nil
	}
	mine := func(l map[string]string) bool {
		for _, k := range p.rowOf(l) {
			if k.name == objs[0].name {
				return true
			}
		}
		return false
	}
	w := promDuration(window)
	reqs, err := rq.QueryRange(ctx, fmt.Sprintf("sum by (%s, classification) (rate(response_total{%s}[%s]))", strings.Join(p.by, ", "), p.sel, w), start, end, step)
	if err != nil {
		return Timeseries{}, err
	}
	lat, err := rq.QueryRange(ctx, fmt.Sprintf("sum by (%s, le) (rate(response_latency_ms_bucket{%s}[%s]))", strings.Join(p.by, ", "), p.sel, w), start, end, step)
	if err != nil {
		return Timeseries{}, err
	}
	type agg struct {
		total, success float64
		buckets        map[float64]float64
	}
	at := map[time.Time]*agg{}
	get := func(t time.Time) *agg {
		if at[t] == nil {
			at[t] = &agg{buckets: map[float64]float64{}}
		}
		return at[t]
	}
	for _, s := range reqs {
		if !mine(s.Labels) {
			continue
		}
		for _, pt := range s.Points {
			a := get(pt.T)
			a.total += pt.V
			if s.Labels["classification"] == "success" {
				a.success += pt.V
			}
		}
	}
	for _, s := range lat {
		le, ok := parseLe(s.Labels["le"])
		if !ok || !mine(s.Labels) {
			continue
		}
		for _, pt := range s.Points {
			get(pt.T).buckets[le] += pt.V
		}
	}
	times := make([]time.Time, 0, len(at))
	for t := range at {
		times = append(times, t)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	for _, t := range times {
		a := at[t]
		out.RPS = append(out.RPS, Point{t, a.total})
		if a.total > 0 {
			out.SuccessRate = append(out.SuccessRate, Point{t, a.success / a.total})
		}
		bs := make([]bucket, 0, len(a.buckets))
		for le, c := range a.buckets {
			bs = append(bs, bucket{le, c})
		}
		if v, ok := quantile(0.95, bs); ok {
			out.LatencyP95 = append(out.LatencyP95, Point{t, v})
		}
	}
	return out, nil
}
