package metrics

import (
	"context"
	"fmt"
)

// ScrapeStatus is how well Prometheus scrapes the proxies.
type ScrapeStatus struct {
	Targets int `json:"targets"` // proxies Prometheus discovered
	Up      int `json:"up"`      // of which the last scrape succeeded
}

// Scrapes asks Prometheus about its conduit-proxy scrape job.
func (e *Engine) Scrapes(ctx context.Context) (ScrapeStatus, error) {
	s, err := e.Prom.Query(ctx, `sum by (job, instance) (up{job="conduit-proxy"})`)
	if err != nil {
		return ScrapeStatus{}, fmt.Errorf("metrics: prometheus scrape status: %w", err)
	}
	st := ScrapeStatus{Targets: len(s)}
	for _, x := range s {
		if x.Value >= 1 {
			st.Up++
		}
	}
	return st, nil
}
