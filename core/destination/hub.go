package destination

import (
	"sync"
	"sync/atomic"
)

// depKind says what a dependency key names.
type depKind uint8

const (
	depService depKind = iota + 1 // ns/name of a Service
	depIP                         // a pod IP (name holds the IP)
)

// depKey names an object whose change must recompute the topics that depend on it.
type depKey struct {
	kind     depKind
	ns, name string
}

func serviceDep(ns, name string) depKey { return depKey{kind: depService, ns: ns, name: name} }
func ipDep(ip string) depKey            { return depKey{kind: depIP, name: ip} }

// topic is the shared, always up-to-date state of one watched target. Its
// subscribers each own a wake-up channel of capacity one: publishing never
// blocks, and a subscriber that is slow to read only ever sees the latest
// state (stale intermediate states are coalesced away).
type topic[S any] struct {
	id      string
	deps    []depKey
	compute func() S

	mu     sync.Mutex // serializes compute+store so the newest computation is stored last
	latest atomic.Pointer[S]

	subsMu sync.Mutex
	subs   map[chan struct{}]struct{}
}

// refresh recomputes the state and wakes every subscriber.
func (t *topic[S]) refresh() {
	t.mu.Lock()
	s := t.compute()
	t.latest.Store(&s)
	t.mu.Unlock()
	t.subsMu.Lock()
	for ch := range t.subs {
		select {
		case ch <- struct{}{}:
		default: // already woken: it will read the latest state
		}
	}
	t.subsMu.Unlock()
}

// state returns the latest state, computing it if nobody has yet.
func (t *topic[S]) state() S {
	if p := t.latest.Load(); p != nil {
		return *p
	}
	t.refresh()
	return *t.latest.Load()
}

// hub indexes topics by id and by dependency.
type hub[S any] struct {
	mu     sync.Mutex
	topics map[string]*topic[S]
	byDep  map[depKey]map[*topic[S]]struct{}
}

func newHub[S any]() *hub[S] {
	return &hub[S]{topics: map[string]*topic[S]{}, byDep: map[depKey]map[*topic[S]]struct{}{}}
}

// subscribe returns the topic id (creating it with deps and compute when
// new), a wake-up channel and a function that ends the subscription.
func (h *hub[S]) subscribe(id string, deps []depKey, compute func() S) (*topic[S], <-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	t, ok := h.topics[id]
	if !ok {
		t = &topic[S]{id: id, deps: deps, compute: compute, subs: map[chan struct{}]struct{}{}}
		h.topics[id] = t
		for _, d := range deps {
			m := h.byDep[d]
			if m == nil {
				m = map[*topic[S]]struct{}{}
				h.byDep[d] = m
			}
			m[t] = struct{}{}
		}
	}
	t.subsMu.Lock()
	t.subs[ch] = struct{}{}
	t.subsMu.Unlock()
	h.mu.Unlock()
	if !ok {
		t.refresh()
	}
	var once sync.Once
	return t, ch, func() { once.Do(func() { h.unsubscribe(t, ch) }) }
}

func (h *hub[S]) unsubscribe(t *topic[S], ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t.subsMu.Lock()
	delete(t.subs, ch)
	empty := len(t.subs) == 0
	t.subsMu.Unlock()
	if !empty || h.topics[t.id] != t {
		return
	}
	delete(h.topics, t.id)
	for _, d := range t.deps {
		delete(h.byDep[d], t)
		if len(h.byDep[d]) == 0 {
			delete(h.byDep, d)
		}
	}
}

// dirty recomputes every topic that depends on d.
func (h *hub[S]) dirty(d depKey) {
	h.mu.Lock()
	ts := make([]*topic[S], 0, len(h.byDep[d]))
	for t := range h.byDep[d] {
		ts = append(ts, t)
	}
	h.mu.Unlock()
	for _, t := range ts {
		t.refresh()
	}
}

// deps lists the dependency keys of every topic of kind k.
func (h *hub[S]) depsOfKind(k depKind) []depKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []depKey
	for d := range h.byDep {
		if d.kind == k {
			out = append(out, d)
		}
	}
	return out
}

// count returns the number of topics (for tests and metrics).
func (h *hub[S]) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.topics)
}

// follower keeps a stream subscribed to the topic its target resolves to
// now: an "ip:port" target may start or stop being a Service's cluster IP
// while the stream is open. The stream calls follow at every wake-up (the
// topics of both resolutions are woken when the binding changes) and
// continues its diff from what it has sent.
type follower[S any] struct {
	h      *hub[S]
	tp     *topic[S]
	wake   <-chan struct{}
	cancel func()
}

// follow subscribes to topic id unless it is already the current one.
func (f *follower[S]) follow(id string, deps []depKey, compute func() S) {
	if f.tp != nil && f.tp.id == id {
		return
	}
	f.stop()
	f.tp, f.wake, f.cancel = f.h.subscribe(id, deps, compute)
}

// stop ends the current subscription.
func (f *follower[S]) stop() {
	if f.cancel != nil {
		f.cancel()
		f.cancel = nil
	}
}
