package balance

import (
	"testing"
	"time"
)

func TestPickPrefersFastAndIdle(t *testing.T) {
	fast, slow := NewEndpoint("fast", 1), NewEndpoint("slow", 1)
	// Teach the balancer: slow answers in 50ms, fast in 1ms.
	for i := 0; i < 5; i++ {
		s := slow.Start()
		slow.stamp = s
		slow.Done(s-int64(50*time.Millisecond), DefaultDecay)
		f := fast.Start()
		fast.Done(f-int64(time.Millisecond), DefaultDecay)
	}
	eps := []*Endpoint{fast, slow}
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		counts[P2C{}.Pick(eps).Value.(string)]++
	}
	if counts["fast"] != 1000 {
		t.Errorf("with two endpoints P2C compares both: got %v", counts)
	}

	// Requests in flight raise the load: 100 pending on fast makes slow win.
	for i := 0; i < 100; i++ {
		fast.Start()
	}
	if got := (P2C{}).Pick(eps).Value; got != "slow" {
		t.Errorf("pick with fast saturated = %v, want slow", got)
	}
}

func TestPickSpreads(t *testing.T) {
	var eps []*Endpoint
	for i := 0; i < 10; i++ {
		eps = append(eps, NewEndpoint(i, 1))
	}
	counts := make([]int, 10)
	for i := 0; i < 10000; i++ {
		counts[P2C{}.Pick(eps).Value.(int)]++
	}
	for i, c := range counts {
		// Equal endpoints: each gets about 1000.
		if c < 700 || c > 1300 {
			t.Errorf("endpoint %d picked %d times of 10000", i, c)
		}
	}
}

func TestPickEdgeCases(t *testing.T) {
	if (P2C{}).Pick(nil) != nil {
		t.Error("empty set must give nil")
	}
	one := NewEndpoint("x", 0)
	if (P2C{}).Pick([]*Endpoint{one}) != one || one.Weight != 1 {
		t.Error("single endpoint")
	}
}

func TestPeakEWMA(t *testing.T) {
	e := NewEndpoint("x", 1)
	s := e.Start()
	e.Done(s-int64(100*time.Millisecond), DefaultDecay)
	if e.cost < float64(100*time.Millisecond) {
		t.Errorf("peak not taken: %v", time.Duration(e.cost))
	}
	// A fast response right after only decays the estimate a little.
	s = e.Start()
	e.Done(s, DefaultDecay)
	if e.cost < float64(90*time.Millisecond) {
		t.Errorf("decayed too fast: %v", time.Duration(e.cost))
	}
	if e.Pending() != 0 {
		t.Errorf("pending %d", e.Pending())
	}
}

func BenchmarkPick(b *testing.B) {
	var eps []*Endpoint
	for i := 0; i < 20; i++ {
		eps = append(eps, NewEndpoint(i, 1))
	}
	b.ReportAllocs()
	for b.Loop() {
		e := P2C{}.Pick(eps)
		e.Done(e.Start(), DefaultDecay)
	}
}

// A refused connection fails fast, which a latency-based balancer would
// reward: Failed must instead keep the endpoint out of the picks for
// FailBackoff while another endpoint can be picked, without counting it
// as a latency sample, and an answer clears it.
func TestPickAvoidsFailedEndpoint(t *testing.T) {
	dead, slow, slower := NewEndpoint("dead", 1), NewEndpoint("slow", 1), NewEndpoint("slower", 1)
	for _, e := range []*Endpoint{slow, slower} {
		s := e.Start()
		e.Done(s-int64(20*time.Millisecond), DefaultDecay)
	}
	dead.Start()
	dead.Failed()
	if dead.Pending() != 0 || !dead.Failing() {
		t.Fatalf("after Failed: pending %d, failing %v; want 0, true", dead.Pending(), dead.Failing())
	}
	if dead.cost != defaultRTT {
		t.Errorf("Failed changed the latency estimate to %v", time.Duration(dead.cost))
	}
	eps := []*Endpoint{dead, slow, slower}
	for i := 0; i < 1000; i++ {
		if got := (P2C{}).Pick(eps); got == dead {
			t.Fatalf("pick %d chose the failing endpoint, though its latency is the lowest", i)
		}
	}
	// With most endpoints failing, the one that is not is found.
	for _, e := range []*Endpoint{slow, slower} {
		e.Start()
		e.Failed()
	}
	spare := NewEndpoint("spare", 1)
	many := []*Endpoint{slow, slower, dead, spare}
	for i := 0; i < 1000; i++ {
		if got := (P2C{}).Pick(many); got != spare {
			t.Fatalf("pick %d chose %v of three failing endpoints and one that is not", i, got.Value)
		}
	}
	// Alone, or with only failing ones, it is still picked: there is nothing better.
	if (P2C{}).Pick([]*Endpoint{dead}) != dead {
		t.Error("a failing endpoint alone must still be picked")
	}
	if got := (P2C{}).Pick([]*Endpoint{dead, slow}); got == nil {
		t.Error("all failing: nothing picked")
	}
	for _, e := range []*Endpoint{slow, slower} {
		e.Done(e.Start(), DefaultDecay)
	}
	// The backoff ends.
	dead.failedUntil.Store(nanotime() - 1)
	if dead.Failing() {
		t.Error("still failing after its backoff")
	}
	picked := false
	for i := 0; i < 1000 && !picked; i++ {
		picked = (P2C{}).Pick(eps) == dead
	}
	if !picked {
		t.Error("after its backoff the endpoint (lowest latency) was never picked in 1000 picks")
	}
	// An answer clears it at once.
	dead.Start()
	dead.Failed()
	s := dead.Start()
	dead.Done(s, DefaultDecay)
	if dead.Failing() {
		t.Error("still failing after it answered")
	}
}

// TestFailBackoffGrows: each failure without an answer between doubles the
// time an endpoint is avoided (less a jitter of up to a fifth), up to
// MaxFailBackoff; an answer starts it over at FailBackoff.
func TestFailBackoffGrows(t *testing.T) {
	e := NewEndpoint("flaky", 1)
	backoff := func() time.Duration { return time.Duration(e.failedUntil.Load() - nanotime()) }
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i, w := range want {
		e.Start()
		e.Failed()
		if got, w := backoff(), w*time.Second; got > w || got < w*4/5-50*time.Millisecond {
			t.Fatalf("after failure %d: avoided for %v, want %v", i+1, got.Round(time.Millisecond), w)
		}
	}
	e.Done(e.Start(), DefaultDecay)
	e.Start()
	e.Failed()
	if got := backoff(); got > FailBackoff || got < FailBackoff*4/5-50*time.Millisecond {
		t.Errorf("a failure after an answer: avoided for %v, want %v", got.Round(time.Millisecond), FailBackoff)
	}
	for n := int64(1); n < 100; n++ {
		if b := failBackoff(n); b <= 0 || b > MaxFailBackoff {
			t.Fatalf("failBackoff(%d) = %v, out of (0, %v]", n, b, MaxFailBackoff)
		}
	}
	// The jitter spreads the backoffs over the last fifth of the range.
	seen := map[time.Duration]bool{}
	for range 100 {
		j := jittered(FailBackoff)
		if j > FailBackoff || j < FailBackoff*4/5 {
			t.Fatalf("jittered(%v) = %v, out of [%v, %v]", FailBackoff, j, FailBackoff*4/5, FailBackoff)
		}
		seen[j] = true
	}
	if len(seen) < 50 {
		t.Errorf("100 jittered backoffs took %d values: not spread", len(seen))
	}
}
