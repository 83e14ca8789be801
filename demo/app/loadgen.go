package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Loadgen sends GETs to URL at a constant rate (open loop: a slow answer
// does not delay the next request), with at most MaxInFlight outstanding.
type Loadgen struct {
	URL         string
	RPS         float64
	MaxInFlight int
	HTTP        *http.Client
	Log         *slog.Logger

	OK, Failed, Skipped atomic.Int64
}

// Run sends requests until ctx is done, then waits for those in flight.
func (l *Loadgen) Run(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / l.RPS)
	t := time.NewTicker(interval)
	defer t.Stop()
	sem := make(chan struct{}, l.MaxInFlight)
	var wg sync.WaitGroup
	report := time.NewTicker(10 * time.Second)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-report.C:
			l.Log.Info("load", "ok", l.OK.Load(), "failed", l.Failed.Load(), "skipped", l.Skipped.Load())
		case <-t.C:
			select {
			case sem <- struct{}{}:
			default:
				l.Skipped.Add(1)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				l.once(ctx)
			}()
		}
	}
}

func (l *Loadgen) once(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.URL, nil)
	if err != nil {
		l.Failed.Add(1)
		return
	}
	resp, err := l.HTTP.Do(req)
	if err != nil {
		l.Failed.Add(1)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		l.Failed.Add(1)
		return
	}
	l.OK.Add(1)
}
