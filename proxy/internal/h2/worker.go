package h2

import "sync"

// workers runs stream handlers and body senders on reused goroutines.
// Such a goroutine's call chain is deep (the proxy's routing, the next
// hop's HPACK encoding, TLS writes), so a new one grows its stack by
// copying it, twice or more, on every request: runtime.newstack was 4-7 %
// of a proxy's CPU at 1,000 requests/s. A parked worker keeps its grown
// stack (until the garbage collector shrinks an idle one). The most
// recently parked worker is reused first, so in steady state a few hot
// workers do the work.
type workers struct {
	mu   sync.Mutex
	idle []chan task
}

// task is what a worker runs: a handler's stream (handleTask), or any
// function (funcTask). A pointer or a function in an interface costs no
// allocation, where a closure per request would.
type task interface{ run() }

type funcTask func()

func (f funcTask) run() { f() }

// maxIdleWorkers bounds the parked workers; above it a worker exits when
// its function returns.
const maxIdleWorkers = 64

// pool is shared by every Server and Client of the process.
var pool workers

// run runs f on a parked worker, or on a new one.
func (p *workers) run(f task) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		ch := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		ch <- f
		return
	}
	p.mu.Unlock()
	go p.work(make(chan task, 1), f)
}

func (p *workers) work(ch chan task, f task) {
	for {
		f.run()
		f = nil // let f's captures go while parked
		p.mu.Lock()
		if len(p.idle) >= maxIdleWorkers {
			p.mu.Unlock()
			return
		}
		p.idle = append(p.idle, ch)
		p.mu.Unlock()
		f = <-ch
	}
}
