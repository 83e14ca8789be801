package app

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"
)

// Counter is the HTTP/1.1 backend: GET /count increments and returns a
// counter. A share of requests (FailureRate, 0..1) fails with 500, and every
// answer waits Latency first.
type Counter struct {
	Name        string
	FailureRate float64
	Latency     time.Duration
	n           atomic.Int64
	// rand returns a float in [0,1); tests replace it.
	rand func() float64
}

// ServeHTTP implements http.Handler.
func (c *Counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/count" {
		http.NotFound(w, r)
		return
	}
	if c.Latency > 0 {
		select {
		case <-time.After(c.Latency):
		case <-r.Context().Done():
			return
		}
	}
	rnd := c.rand
	if rnd == nil {
		rnd = rand.Float64
	}
	if rnd() < c.FailureRate {
		http.Error(w, "counter: injected failure", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"count": c.n.Add(1), "servedBy": c.Name})
}
