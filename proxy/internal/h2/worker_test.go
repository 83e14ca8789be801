package h2

import (
	"sync"
	"testing"
	"time"
)

// idleWorkers waits until p has want parked workers and returns how many
// it has.
func idleWorkers(p *workers, want int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.idle)
		p.mu.Unlock()
		if n == want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWorkersReuseOneForSequentialCalls(t *testing.T) {
	var p workers
	for i := range 100 {
		done := make(chan struct{})
		p.run(funcTask(func() { close(done) }))
		<-done
		if n := idleWorkers(&p, 1); n != 1 {
			t.Fatalf("after call %d: %d parked workers, want the one worker reused", i, n)
		}
	}
}

func TestWorkersBurstRunsEveryCallAndParksAtMost(t *testing.T) {
	var p workers
	const calls = 3 * maxIdleWorkers
	release := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ran := map[int]int{}
	wg.Add(calls)
	for i := range calls {
		p.run(funcTask(func() {
			defer wg.Done()
			<-release // all run at once: each needs a worker of its own
			mu.Lock()
			ran[i]++
			mu.Unlock()
		}))
	}
	close(release)
	wg.Wait()
	for i := range calls {
		if ran[i] != 1 {
			t.Fatalf("call %d ran %d times, want 1", i, ran[i])
		}
	}
	if n := idleWorkers(&p, maxIdleWorkers); n != maxIdleWorkers {
		t.Fatalf("%d parked workers after a burst of %d, want the bound %d", n, calls, maxIdleWorkers)
	}
}
