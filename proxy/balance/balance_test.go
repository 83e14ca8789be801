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
