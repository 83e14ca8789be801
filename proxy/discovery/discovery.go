package discovery

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/identity"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/profile"
)

// Addr is one endpoint.
type Addr struct {
	// Addr is "ip:port".
	Addr   string
	Weight uint32
	// Labels is the rendered dst_* metric label fragment.
	Labels string
	// LabelMap holds the same labels without the prefix (tap); never modified.
	LabelMap map[string]string
	// Identity is the peer's TLS identity; empty when the endpoint is not meshed.
	Identity string
	// ServerName is the SNI to use (defaults to Identity).
	ServerName string
	H2         bool
	Opaque     bool
}

// Endpoints is an immutable snapshot of a destination.
type Endpoints struct {
	// Known is false until the destination service answered once.
	Known bool
	// Exists is false when the name is not a known Service.
	Exists bool
	Addrs  []*Addr
}

// ProfileState is an immutable snapshot of a profile.
type ProfileState struct {
	Known    bool
	Profile  *profile.Profile
	Endpoint *Addr
}

// Client watches destinations. It is safe for concurrent use.
type Client struct {
	api      destinationv1.DestinationClient
	token    string
	log      *slog.Logger
	idle     time.Duration
	maxAge   time.Duration
	minBack  time.Duration
	maxBack  time.Duration
	ctx      context.Context
	mu       sync.Mutex
	dests    map[string]*Resolution
	profiles map[string]*ProfileWatch
	// lastDests and lastProfiles keep the state of dropped watches for
	// LastKnownMaxAge, for a new watch of the same name to fall back on
	// while the destination service does not answer it.
	lastDests    map[string]*lastKnown[Endpoints]
	lastProfiles map[string]*lastKnown[ProfileState]
	// unreachable is set when a stream fails and cleared when one
	// delivers, or when no watch is left: a new watch with a last known
	// state then uses it at once rather than after its own stream fails or
	// a caller's wait ends.
	unreachable atomic.Bool
}

// maxLastKnown bounds each map of dropped watches' states, so that a
// workload that dials ever new addresses cannot grow it without end.
const maxLastKnown = 10000

// Options tune a Client.
type Options struct {
	ContextToken string
	Logger       *slog.Logger
	// IdleTimeout drops watches unused for this long (default 5m).
	IdleTimeout time.Duration
	// LastKnownMaxAge is how long the last state of a dropped watch is
	// kept: a new watch of the same name that the destination service does
	// not answer (its stream fails, or a caller's Wait ends first) uses it
	// if it was current less than this long ago. Zero (or less) keeps
	// none.
	LastKnownMaxAge time.Duration
	// MinBackoff and MaxBackoff bound reconnect delays (defaults 100ms, 10s).
	MinBackoff, MaxBackoff time.Duration
}

// New returns a client of cc's destination API; watches stop when ctx ends.
func New(ctx context.Context, cc grpc.ClientConnInterface, o Options) *Client {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	c := &Client{
		api: destinationv1.NewDestinationClient(cc), token: o.ContextToken, log: o.Logger,
		idle: o.IdleTimeout, maxAge: o.LastKnownMaxAge, minBack: o.MinBackoff, maxBack: o.MaxBackoff, ctx: ctx,
		dests: map[string]*Resolution{}, profiles: map[string]*ProfileWatch{},
		lastDests: map[string]*lastKnown[Endpoints]{}, lastProfiles: map[string]*lastKnown[ProfileState]{},
	}
	go c.reap()
	return c
}

func (c *Client) reap() {
	t := time.NewTicker(c.idle / 2)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		c.mu.Lock()
		for k, r := range c.dests {
			if lk, dropped := r.drop(now, c.idle); dropped {
				delete(c.dests, k)
				keepLast(c.lastDests, k, lk, c.maxAge)
			}
		}
		for k, p := range c.profiles {
			if lk, dropped := p.drop(now, c.idle); dropped {
				delete(c.profiles, k)
				keepLast(c.lastProfiles, k, lk, c.maxAge)
			}
		}
		expireLast(c.lastDests, now, c.maxAge)
		expireLast(c.lastProfiles, now, c.maxAge)
		if len(c.dests)+len(c.profiles) == 0 {
			// No stream left to say whether the service answers: the
			// next one will.
			c.unreachable.Store(false)
		}
		c.mu.Unlock()
	}
}

// Status reports whether the destination service is unreachable (the last
// stream event was a failure) and how many watches of each kind serve a
// state it no longer confirms: their stream failed after answering, or they
// took a dropped watch's state and have had no answer since.
func (c *Client) Status() (unreachable bool, staleEndpoints, staleProfiles int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.dests {
		if r.w.stale.Load() != 0 {
			staleEndpoints++
		}
	}
	for _, p := range c.profiles {
		if p.w.stale.Load() != 0 {
			staleProfiles++
		}
	}
	return c.unreachable.Load(), staleEndpoints, staleProfiles
}

// lastKnown is the state a dropped watch had, and when it was last current.
type lastKnown[E any] struct {
	state *E
	at    time.Time
}

// keepLast keeps lk as k's last known state in m, unless the client keeps
// none or m is full.
func keepLast[E any](m map[string]*lastKnown[E], k string, lk *lastKnown[E], maxAge time.Duration) {
	if lk != nil && maxAge > 0 && (len(m) < maxLastKnown || m[k] != nil) {
		m[k] = lk
	}
}

func expireLast[E any](m map[string]*lastKnown[E], now time.Time, maxAge time.Duration) {
	for k, lk := range m {
		if now.Sub(lk.at) >= maxAge {
			delete(m, k)
		}
	}
}

// takeLast removes and returns m's entry for k if it is younger than maxAge.
func takeLast[E any](m map[string]*lastKnown[E], k string, now time.Time, maxAge time.Duration) *lastKnown[E] {
	lk := m[k]
	if lk == nil {
		return nil
	}
	delete(m, k)
	if now.Sub(lk.at) >= maxAge {
		return nil
	}
	return lk
}

// watch is the state of one discovery stream.
type watch[E any] struct {
	state  atomic.Pointer[E]
	empty  *E // the state before any answer
	ready  chan struct{}
	once   sync.Once
	used   atomic.Int64
	cancel context.CancelFunc
	// dropped is set when the watch is dropped for lack of use.
	dropped atomic.Bool
	// stale is when the state stopped being current (UnixNano): 0 while
	// the stream delivers it, or before any state.
	stale atomic.Int64
	// fallback is the state of the name's previous watch, used when this
	// one goes unanswered; nil when there is none.
	fallback *lastKnown[E]
	log      *slog.Logger
	kind     string // "path" or "profile", with name for the log
	name     string
}

func newWatch[E any](cancel context.CancelFunc, fallback *lastKnown[E], log *slog.Logger, kind, name string) *watch[E] {
	w := &watch[E]{empty: new(E), ready: make(chan struct{}), cancel: cancel, fallback: fallback, log: log, kind: kind, name: name}
	w.state.Store(w.empty)
	w.used.Store(time.Now().UnixNano())
	return w
}

func (w *watch[E]) current() *E {
	w.used.Store(time.Now().UnixNano())
	return w.state.Load()
}

func (w *watch[E]) wait(ctx context.Context) *E {
	select {
	case <-w.ready:
	case <-ctx.Done():
		w.useFallback("no answer in time")
	}
	return w.current()
}

// set replaces the state with the stream's answer.
func (w *watch[E]) set(e *E) {
	w.state.Store(e)
	w.stale.Store(0)
	w.once.Do(func() { close(w.ready) })
}

// failed records that the stream failed: the state it has is no longer
// current; without one, the previous watch's state takes its place.
func (w *watch[E]) failed(err error) {
	if w.state.Load() == w.empty {
		w.useFallback(err.Error())
		return
	}
	w.stale.CompareAndSwap(0, time.Now().UnixNano())
}

// useFallback gives an unanswered watch the previous watch's state.
func (w *watch[E]) useFallback(why string) {
	fb := w.fallback
	if fb == nil || !w.state.CompareAndSwap(w.empty, fb.state) {
		return
	}
	w.stale.Store(fb.at.UnixNano())
	// Logged before the waiters go on, so that the line precedes what
	// they do with the state.
	w.log.Warn("destination service unanswered; using what it said before the name's watch was dropped",
		w.kind, w.name, "age", time.Since(fb.at).Round(time.Millisecond).String(), "reason", why)
	w.once.Do(func() { close(w.ready) })
}

// drop cancels the watch when it has been unused for idle and returns the
// state to remember for the name's next watch (nil when none).
func (w *watch[E]) drop(now time.Time, idle time.Duration) (*lastKnown[E], bool) {
	if w.used.Load() >= now.Add(-idle).UnixNano() {
		return nil, false
	}
	w.dropped.Store(true)
	w.cancel()
	st := w.state.Load()
	if st == w.empty {
		// Never answered: what it fell back on stays for the next one.
		return w.fallback, true
	}
	at := now
	if s := w.stale.Load(); s != 0 {
		at = time.Unix(0, s)
	}
	return &lastKnown[E]{state: st, at: at}, true
}

// Resolution is a live view of one destination.
type Resolution struct{ w *watch[Endpoints] }

// Dropped reports whether the watch was dropped, unused for the idle
// timeout: its state no longer changes. A caller that keeps a Resolution
// must then Resolve the path again.
func (r *Resolution) Dropped() bool { return r.w.dropped.Load() }

// Endpoints returns the current snapshot (never nil).
func (r *Resolution) Endpoints() *Endpoints { return r.w.current() }

// Wait returns the snapshot once known, or the current one when ctx ends
// first: then the last state of the name's previous watch, if it had one
// (Options.LastKnownMaxAge), else an unknown one.
func (r *Resolution) Wait(ctx context.Context) *Endpoints { return r.w.wait(ctx) }

func (r *Resolution) drop(now time.Time, idle time.Duration) (*lastKnown[Endpoints], bool) {
	return r.w.drop(now, idle)
}

// ProfileWatch is a live view of one profile.
type ProfileWatch struct{ w *watch[ProfileState] }

// State returns the current snapshot (never nil).
func (p *ProfileWatch) State() *ProfileState { return p.w.current() }

// Wait returns the snapshot once known, or the current one when ctx ends
// first, as Resolution.Wait does.
func (p *ProfileWatch) Wait(ctx context.Context) *ProfileState { return p.w.wait(ctx) }

func (p *ProfileWatch) drop(now time.Time, idle time.Duration) (*lastKnown[ProfileState], bool) {
	return p.w.drop(now, idle)
}

// Resolve returns the watch of path ("name.ns.svc.cluster.local:port"), starting it if needed.
func (c *Client) Resolve(path string) *Resolution {
	c.mu.Lock()
	r := c.dests[path]
	if r == nil {
		r = &Resolution{startWatch(c, c.lastDests, "path", path, c.watchDest)}
		c.dests[path] = r
	}
	c.mu.Unlock()
	return r
}

// startWatch starts a watch of path, of kind ("path" or "profile"), that
// falls back on the state last known of path in last, and runs it with run
// until the watch is dropped. Under c.mu.
func startWatch[E any](c *Client, last map[string]*lastKnown[E], kind, path string, run func(context.Context, string, *watch[E])) *watch[E] {
	ctx, cancel := context.WithCancel(c.ctx)
	w := newWatch(cancel, takeLast(last, path, time.Now(), c.maxAge), c.log, kind, path)
	if c.unreachable.Load() {
		w.useFallback("the destination service is unreachable")
	}
	go run(ctx, path, w)
	return w
}

// Profile returns the profile watch of path (an authority or "ip:port").
func (c *Client) Profile(path string) *ProfileWatch {
	c.mu.Lock()
	p := c.profiles[path]
	if p == nil {
		p = &ProfileWatch{startWatch(c, c.lastProfiles, "profile", path, c.watchProfile)}
		c.profiles[path] = p
	}
	c.mu.Unlock()
	return p
}

// failed records that a stream of a watch still in use failed. Under c.mu,
// as the reaper drops watches: a watch dropped meanwhile (ctx ended) does
// not set it again after the reaper cleared it.
func (c *Client) failed(ctx context.Context) {
	c.mu.Lock()
	if ctx.Err() == nil {
		c.unreachable.Store(true)
	}
	c.mu.Unlock()
}

func (c *Client) sleep(ctx context.Context, failures int) bool {
	t := time.NewTimer(identity.Backoff(failures, c.minBack, c.maxBack))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// permanent reports errors that retrying will not fix for this name.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound:
		return true
	}
	return false
}

func (c *Client) watchDest(ctx context.Context, path string, r *watch[Endpoints]) {
	failures := 0
	for ctx.Err() == nil {
		stream, err := c.api.Get(ctx, &destinationv1.GetDestination{Path: path, ContextToken: c.token})
		if err == nil {
			// A new stream starts from nothing: its first message, a
			// snapshot, replaces the state.
			var st destState
			for {
				var u *destinationv1.Update
				if u, err = stream.Recv(); err != nil {
					break
				}
				failures = 0
				c.unreachable.Store(false)
				if st.apply(c.log, path, u) {
					r.set(snapshot(st.addrs, st.exists))
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if permanent(err) {
			c.log.Debug("destination rejected name", "path", path, "err", err)
			r.set(&Endpoints{Known: true, Exists: false})
		} else {
			c.log.Warn("destination stream failed; keeping last endpoints", "path", path, "err", err)
			c.failed(ctx)
			r.failed(err)
		}
		failures++
		if !c.sleep(ctx, failures) {
			return
		}
	}
}

func (c *Client) watchProfile(ctx context.Context, path string, p *watch[ProfileState]) {
	failures := 0
	for ctx.Err() == nil {
		stream, err := c.api.GetProfile(ctx, &destinationv1.GetDestination{Path: path, ContextToken: c.token})
		if err == nil {
			for {
				var dp *destinationv1.DestinationProfile
				if dp, err = stream.Recv(); err != nil {
					break
				}
				failures = 0
				c.unreachable.Store(false)
				prof, cerr := profile.Compile(dp)
				if cerr != nil {
					// A bad profile must not break traffic: keep the previous one.
					if p.state.Load().Known {
						c.log.Warn("ignoring invalid service profile", "path", path, "err", cerr)
						continue
					}
					// There is none: without an answer every request would
					// wait for one (the discovery timeout). Use what does
					// not depend on the invalid parts: the name, whether
					// the port is opaque, the endpoint; no routes, retry
					// budget or split.
					c.log.Warn("invalid service profile; using it without routes, retry budget or split", "path", path, "err", cerr)
					prof = &profile.Profile{FQN: dp.GetFullyQualifiedName(), Opaque: dp.GetOpaqueProtocol()}
				}
				st := &ProfileState{Known: true, Profile: prof}
				if ep := dp.GetEndpoint(); ep != nil {
					st.Endpoint = convert(ep, nil)
				}
				p.set(st)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if permanent(err) {
			p.set(&ProfileState{Known: true})
		} else {
			c.log.Warn("profile stream failed; keeping last profile", "path", path, "err", err)
			c.failed(ctx)
			p.failed(err)
		}
		failures++
		if !c.sleep(ctx, failures) {
			return
		}
	}
}

// destState is the endpoint set of one Get stream.
type destState struct {
	addrs  map[string]*Addr
	exists bool // the name is a Service, with or without endpoints
}

// apply applies an update of path to st and reports whether it is one (an
// update of no known kind is logged and ignored). Addresses that are not
// an IP and a port are logged and left out. Whether the name is a Service
// is the state's: an Add says it is, NoEndpoints says whether it is, and a
// Remove (of an address known or not) leaves that as it was.
func (st *destState) apply(log *slog.Logger, path string, u *destinationv1.Update) bool {
	if st.addrs == nil {
		st.addrs = map[string]*Addr{}
	}
	switch v := u.GetUpdate().(type) {
	case *destinationv1.Update_Add:
		st.exists = true
		for _, wa := range v.Add.GetAddrs() {
			a := convert(wa, v.Add.GetMetricLabels())
			if a == nil {
				log.Warn("ignoring invalid endpoint from the destination service", "path", path,
					"ip", wa.GetAddr().GetIp(), "port", wa.GetAddr().GetPort())
				continue
			}
			st.addrs[a.Addr] = a
		}
	case *destinationv1.Update_Remove:
		for _, ta := range v.Remove.GetAddrs() {
			if hp, ok := hostPort(ta); ok {
				delete(st.addrs, hp)
			}
		}
	case *destinationv1.Update_NoEndpoints:
		clear(st.addrs)
		st.exists = v.NoEndpoints.GetExists()
	default:
		log.Warn("ignoring destination update of no known kind", "path", path)
		return false
	}
	return true
}

// hostPort is t's "ip:port" in canonical form (IPv4-mapped IPv6 as IPv4,
// IPv6 compressed and lower case), so that an address is the same key in
// whatever form an Add and a Remove write it; ok is false when t is not an
// IP address without zone and a port in 1-65535.
func hostPort(t *destinationv1.TcpAddress) (s string, ok bool) {
	ip, err := netip.ParseAddr(t.GetIp())
	if err != nil || ip.Zone() != "" || t.GetPort() == 0 || t.GetPort() > 65535 {
		return "", false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(t.GetPort())).String(), true
}

func convert(wa *destinationv1.WeightedAddr, setLabels map[string]string) *Addr {
	hp, ok := hostPort(wa.GetAddr())
	if !ok {
		return nil
	}
	labels := make(map[string]string, len(setLabels)+len(wa.GetMetricLabels()))
	for k, v := range setLabels {
		labels[k] = v
	}
	for k, v := range wa.GetMetricLabels() {
		labels[k] = v
	}
	a := &Addr{Addr: hp, Weight: wa.GetWeight(), Labels: metrics.Labels("dst_", labels), LabelMap: labels}
	if a.Weight == 0 {
		a.Weight = 1
	}
	if id := wa.GetTlsIdentity(); id != nil && id.GetDnsLikeIdentity() != "" {
		a.Identity = id.GetDnsLikeIdentity()
		a.ServerName = id.GetServerName()
		if a.ServerName == "" {
			a.ServerName = a.Identity
		}
	}
	if h := wa.GetProtocolHint(); h != nil {
		a.H2 = h.GetH2() != nil
		a.Opaque = h.GetOpaque() != nil
	}
	return a
}

func snapshot(m map[string]*Addr, exists bool) *Endpoints {
	e := &Endpoints{Known: true, Exists: exists || len(m) > 0}
	for _, a := range m {
		e.Addrs = append(e.Addrs, a)
	}
	sort.Slice(e.Addrs, func(i, j int) bool { return e.Addrs[i].Addr < e.Addrs[j].Addr })
	return e
}
