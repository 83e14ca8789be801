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

// FailBackoff is how long an endpoint that could not be reached is avoided
// while another one can be picked. A refused connection fails fast, and to
// a latency-based balancer fast looks good: without it, a dead endpoint
// would draw the traffic. Each further failure without an answer between
// doubles it, up to MaxFailBackoff: an endpoint that stays unreachable
// (listed, but not listening) costs a failed attempt ever more rarely.
const FailBackoff = time.Second

// MaxFailBackoff bounds the backoff of an endpoint that keeps failing.
const MaxFailBackoff = 30 * time.Second

// failBackoff is the backoff after the n-th failure in a row (n ≥ 1).
func failBackoff(n int64) time.Duration {
	if n > 6 { // 1 s << 5 = 32 s: past the bound already
		return MaxFailBackoff
	}
	return min(FailBackoff<<(n-1), MaxFailBackoff)
}

// jittered shortens d by up to a fifth, at random: the client proxies that
// saw an endpoint fail at the same moment do not all try it again at the
// same moment.
func jittered(d time.Duration) time.Duration {
	return d - rand.N(d/5+1)
}

// Endpoint carries the load statistics of one backend. It is safe for
// concurrent use; Value is the caller's payload.
type Endpoint struct {
	Value   any
	Weight  uint32
	pending atomic.Int64

	// failedUntil is the time (ns) until which the endpoint is avoided
	// after a failed connection; 0 when it is not.
	failedUntil atomic.Int64
	// fails counts the failures since the last answer.
	fails atomic.Int64

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

// Failed ends a request (begun with Start) that could not reach the
// endpoint (its connection failed): not a latency sample, and the endpoint
// is avoided for FailBackoff, doubled for each failure before it since the
// last answer (MaxFailBackoff at most), less up to a fifth (jitter).
func (e *Endpoint) Failed() {
	e.pending.Add(-1)
	e.failedUntil.Store(nanotime() + int64(jittered(failBackoff(e.fails.Add(1)))))
}

// Failing reports whether the endpoint is avoided after a failed connection.
func (e *Endpoint) Failing() bool { return e.failing(nanotime()) }

func (e *Endpoint) failing(now int64) bool {
	until := e.failedUntil.Load()
	return until != 0 && now < until
}

// Done records a completed request that started at start.
func (e *Endpoint) Done(start int64, decay time.Duration) {
	now := nanotime()
	e.pending.Add(-1)
	if e.failedUntil.Load() != 0 {
		e.failedUntil.Store(0) // it answered
		e.fails.Store(0)
	}
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

// Pick returns the less loaded of two random endpoints, or nil if eps is
// empty. An endpoint that is Failing is picked only when all are.
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
	switch fa, fb := a.failing(now), b.failing(now); {
	case fa && fb:
		// Both failing: the next one that is not, if any (rare: no
		// cost while the endpoints answer).
		for k := uint(1); k < n; k++ {
			if e := eps[(i+k)%n]; !e.failing(now) {
				return e
			}
		}
	case fa:
		return b
	case fb:
		return a
	}
	// Loads within 1 % are a tie; a is already a uniform random choice.
	if a.load(now, float64(decay)) <= b.load(now, float64(decay))*1.01 {
		return a
	}
	return b
}
