package balance

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultDecay is the time constant of the moving average.
const DefaultDecay = 10 * time.Second

// defaultRTT seeds new endpoints so they are tried without being flooded.
const defaultRTT = float64(time.Millisecond)

// Endpoint carries the load statistics of one backend. It is safe for
// concurrent use; Value is the caller's payload.
type Endpoint struct {
	Value   any
	Weight  uint32
	pending atomic.Int64

	mu    sync.Mutex
	cost  float64 // ns, peak-EWMA
	stamp int64   // ns, last update
}

// NewEndpoint returns an endpoint for v.
func NewEndpoint(v any, weight uint32) *Endpoint {
	if weight == 0 {
		weight = 1
	}
	return &Endpoint{Value: v, Weight: weight, cost: defaultRTT, stamp: nanotime()}
}

var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// Pending is the number of requests in flight.
func (e *Endpoint) Pending() int64 { return e.pending.Load() }

// load is the decayed cost times (pending+1), divided by weight.
func (e *Endpoint) load(now int64, decay float64) float64 {
	e.mu.Lock()
	cost := e.cost
	elapsed := float64(now - e.stamp)
	e.mu.Unlock()
	if elapsed > 0 {
		// Idle endpoints slowly regain their chance.
		cost *= math.Exp(-elapsed / decay)
		if cost < 1 {
			cost = 1
		}
	}
	return cost * float64(e.pending.Load()+1) / float64(e.Weight)
}

// Start marks a request as in flight and returns its start time for Done.
func (e *Endpoint) Start() int64 {
	e.pending.Add(1)
	return nanotime()
}

// Done records a completed request that started at start.
func (e *Endpoint) Done(start int64, decay time.Duration) {
	now := nanotime()
	e.pending.Add(-1)
	rtt := float64(now - start)
	e.mu.Lock()
	if rtt > e.cost {
		e.cost = rtt // peak: jump up at once
	} else {
		elapsed := float64(now - e.stamp)
		w := math.Exp(-elapsed / float64(decay))
		e.cost = e.cost*w + rtt*(1-w)
	}
	e.stamp = now
	e.mu.Unlock()
}

// P2C picks among endpoints with power of two choices.
type P2C struct {
	Decay time.Duration
}

// Pick returns the less loaded of two random endpoints, or nil if eps is empty.
func (p P2C) Pick(eps []*Endpoint) *Endpoint {
	switch len(eps) {
	case 0:
		return nil
	case 1:
		return eps[0]
	}
	decay := p.Decay
	if decay <= 0 {
		decay = DefaultDecay
	}
	n := uint(len(eps))
	i := rand.UintN(n)
	j := rand.UintN(n - 1)
	if j >= i {
		j++
	}
	a, b := eps[i], eps[j]
	now := nanotime()
	// Loads within 1 % are a tie; a is already a uniform random choice.
	if a.load(now, float64(decay)) <= b.load(now, float64(decay))*1.01 {
		return a
	}
	return b
}
