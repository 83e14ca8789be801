package profile

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sync"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
)

// Profile is a compiled service profile.
type Profile struct {
	FQN    string
	Opaque bool
	Routes []*Route
	Budget *Budget
	Split  []WeightedDst
	total  uint64
}

// Route is a compiled route.
type Route struct {
	Name      string
	match     reqMatch
	classes   []respClass
	Retryable bool
	Timeout   time.Duration
}

// WeightedDst is one traffic-split backend.
type WeightedDst struct {
	Authority string
	Weight    uint32
}

type reqMatch func(*http.Request) bool
type respMatch func(status int) bool

type respClass struct {
	match   respMatch
	failure bool
}

// Compile turns the wire profile into a Profile. Invalid routes (bad regex,
// empty matches) are an error naming the route.
func Compile(p *destinationv1.DestinationProfile) (*Profile, error) {
	out := &Profile{FQN: p.GetFullyQualifiedName(), Opaque: p.GetOpaqueProtocol()}
	for i, r := range p.GetRoutes() {
		name := r.GetMetricsLabels()["route"]
		if name == "" {
			name = fmt.Sprintf("route-%d", i)
		}
		m, err := compileReq(r.GetCondition(), 0)
		if err != nil {
			return nil, fmt.Errorf("profile: route %q: %w", name, err)
		}
		rt := &Route{Name: name, match: m, Retryable: r.GetIsRetryable()}
		if d := r.GetTimeout(); d != nil {
			rt.Timeout = d.AsDuration()
		}
		for _, rc := range r.GetResponseClasses() {
			rm, err := compileResp(rc.GetCondition(), 0)
			if err != nil {
				return nil, fmt.Errorf("profile: route %q response class: %w", name, err)
			}
			rt.classes = append(rt.classes, respClass{match: rm, failure: rc.GetIsFailure()})
		}
		out.Routes = append(out.Routes, rt)
	}
	if b := p.GetRetryBudget(); b != nil {
		if r := b.GetRetryRatio(); math.IsNaN(float64(r)) {
			return nil, fmt.Errorf("profile: retry budget: retry_ratio is NaN")
		}
		ttl := time.Duration(0)
		if b.GetTtl() != nil {
			ttl = b.GetTtl().AsDuration()
		}
		out.Budget = NewBudget(float64(b.GetRetryRatio()), int(b.GetMinRetriesPerSecond()), ttl)
	}
	for _, d := range p.GetDstOverrides() {
		if d.GetWeight() == 0 || d.GetAuthority() == "" {
			continue
		}
		out.Split = append(out.Split, WeightedDst{Authority: d.GetAuthority(), Weight: d.GetWeight()})
		out.total += uint64(d.GetWeight())
	}
	return out, nil
}

const maxDepth = 32

func compileReq(m *destinationv1.RequestMatch, depth int) (reqMatch, error) {
	if m == nil {
		return func(*http.Request) bool { return true }, nil
	}
	if depth > maxDepth {
		return nil, fmt.Errorf("request match nested deeper than %d", maxDepth)
	}
	switch v := m.GetMatch().(type) {
	case *destinationv1.RequestMatch_Method:
		method := v.Method
		return func(r *http.Request) bool { return r.Method == method }, nil
	case *destinationv1.RequestMatch_Path:
		re, err := regexp.Compile("^(?:" + v.Path.GetRegex() + ")$")
		if err != nil {
			return nil, fmt.Errorf("path regex %q: %w", v.Path.GetRegex(), err)
		}
		return func(r *http.Request) bool { return re.MatchString(r.URL.Path) }, nil
	case *destinationv1.RequestMatch_Not:
		inner, err := compileReq(v.Not, depth+1)
		if err != nil {
			return nil, err
		}
		return func(r *http.Request) bool { return !inner(r) }, nil
	case *destinationv1.RequestMatch_All:
		ms, err := compileReqs(v.All.GetMatches(), depth)
		if err != nil {
			return nil, err
		}
		return func(r *http.Request) bool {
			for _, m := range ms {
				if !m(r) {
					return false
				}
			}
			return true
		}, nil
	case *destinationv1.RequestMatch_Any:
		ms, err := compileReqs(v.Any.GetMatches(), depth)
		if err != nil {
			return nil, err
		}
		return func(r *http.Request) bool {
			for _, m := range ms {
				if m(r) {
					return true
				}
			}
			return false
		}, nil
	}
	return nil, fmt.Errorf("empty request match")
}

func compileReqs(ms []*destinationv1.RequestMatch, depth int) ([]reqMatch, error) {
	out := make([]reqMatch, 0, len(ms))
	for _, m := range ms {
		c, err := compileReq(m, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func compileResp(m *destinationv1.ResponseMatch, depth int) (respMatch, error) {
	if m == nil {
		return nil, fmt.Errorf("empty response match")
	}
	if depth > maxDepth {
		return nil, fmt.Errorf("response match nested deeper than %d", maxDepth)
	}
	switch v := m.GetMatch().(type) {
	case *destinationv1.ResponseMatch_Status:
		lo, hi := int(v.Status.GetMin()), int(v.Status.GetMax())
		if hi == 0 {
			hi = 999
		}
		if lo > hi {
			return nil, fmt.Errorf("status range %d-%d is reversed", lo, hi)
		}
		return func(s int) bool { return s >= lo && s <= hi }, nil
	case *destinationv1.ResponseMatch_Not:
		inner, err := compileResp(v.Not, depth+1)
		if err != nil {
			return nil, err
		}
		return func(s int) bool { return !inner(s) }, nil
	case *destinationv1.ResponseMatch_All, *destinationv1.ResponseMatch_Any:
		var seq []*destinationv1.ResponseMatch
		all := false
		if a, ok := v.(*destinationv1.ResponseMatch_All); ok {
			seq, all = a.All.GetMatches(), true
		} else {
			seq = v.(*destinationv1.ResponseMatch_Any).Any.GetMatches()
		}
		ms := make([]respMatch, 0, len(seq))
		for _, s := range seq {
			c, err := compileResp(s, depth+1)
			if err != nil {
				return nil, err
			}
			ms = append(ms, c)
		}
		return func(s int) bool {
			for _, m := range ms {
				if m(s) != all {
					return !all
				}
			}
			return all
		}, nil
	}
	return nil, fmt.Errorf("empty response match")
}

// Match returns the first route matching r, or nil.
func (p *Profile) Match(r *http.Request) *Route {
	if p == nil {
		return nil
	}
	for _, rt := range p.Routes {
		if rt.match(r) {
			return rt
		}
	}
	return nil
}

// IsFailure classifies a response status for route rt (nil: the default, 5xx is a failure).
func IsFailure(rt *Route, status int) bool {
	if rt != nil {
		for _, c := range rt.classes {
			if c.match(status) {
				return c.failure
			}
		}
	}
	return status >= 500
}

// IsFailure classifies a response status for rt; rt may be nil (the default).
func (rt *Route) IsFailure(status int) bool { return IsFailure(rt, status) }

// PickSplit chooses a traffic-split authority by weight; "" when there is no split.
func (p *Profile) PickSplit() string {
	if p == nil || p.total == 0 {
		return ""
	}
	return pickWeighted(p.Split, p.total, rand.Uint64N(p.total))
}

func pickWeighted(ds []WeightedDst, total, n uint64) string {
	for _, d := range ds {
		if n < uint64(d.Weight) {
			return d.Authority
		}
		n -= uint64(d.Weight)
	}
	return ds[len(ds)-1].Authority
}

// Budget limits retries to ratio × requests plus minPerSecond × ttl over a
// sliding window of ttl.
type Budget struct {
	ratio     float64
	minPerSec int
	ttl       time.Duration

	mu      sync.Mutex
	slot    time.Duration
	reqs    [10]float64
	retries [10]float64
	head    int
	headAt  time.Time
	now     func() time.Time
}

// NewBudget returns a budget; ttl defaults to 10s and is clamped to [1s, 60s]
// as in Linkerd; ratio is clamped to [0, 1000] (NaN, which no comparison
// bounds, is 0: the retries are those of minPerSecond only).
func NewBudget(ratio float64, minPerSecond int, ttl time.Duration) *Budget {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	if math.IsNaN(ratio) {
		ratio = 0
	}
	minPerSecond = max(minPerSecond, 0)
	ttl = min(max(ttl, time.Second), time.Minute)
	ratio = min(max(ratio, 0), 1000)
	b := &Budget{ratio: ratio, minPerSec: minPerSecond, ttl: ttl, slot: ttl / 10, now: time.Now}
	b.headAt = b.now()
	return b
}

func (b *Budget) advance() {
	now := b.now()
	for now.Sub(b.headAt) >= b.slot {
		b.head = (b.head + 1) % len(b.reqs)
		b.reqs[b.head], b.retries[b.head] = 0, 0
		b.headAt = b.headAt.Add(b.slot)
		if now.Sub(b.headAt) > b.ttl {
			// Long idle: reset everything at once.
			b.reqs, b.retries = [10]float64{}, [10]float64{}
			b.headAt = now
		}
	}
}

// Deposit records an original request.
func (b *Budget) Deposit() {
	b.mu.Lock()
	b.advance()
	b.reqs[b.head]++
	b.mu.Unlock()
}

// Withdraw asks for one retry; it reports whether the budget allows it and, if so, spends it.
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	var reqs, retries float64
	for i := range b.reqs {
		reqs += b.reqs[i]
		retries += b.retries[i]
	}
	allowed := b.ratio*reqs + float64(b.minPerSec)*b.ttl.Seconds()
	if retries+1 > allowed {
		return false
	}
	b.retries[b.head]++
	return true
}
