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
	minBack  time.Duration
	maxBack  time.Duration
	ctx      context.Context
	mu       sync.Mutex
	dests    map[string]*Resolution
	profiles map[string]*ProfileWatch
}

// Options tune a Client.
type Options struct {
	ContextToken string
	Logger       *slog.Logger
	// IdleTimeout drops watches unused for this long (default 5m).
	IdleTimeout time.Duration
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
		idle: o.IdleTimeout, minBack: o.MinBackoff, maxBack: o.MaxBackoff, ctx: ctx,
		dests: map[string]*Resolution{}, profiles: map[string]*ProfileWatch{},
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
		cutoff := time.Now().Add(-c.idle).UnixNano()
		c.mu.Lock()
		for k, r := range c.dests {
			if r.used.Load() < cutoff {
				r.dropped.Store(true)
				r.cancel()
				delete(c.dests, k)
			}
		}
		for k, p := range c.profiles {
			if p.used.Load() < cutoff {
				p.cancel()
				delete(c.profiles, k)
			}
		}
		c.mu.Unlock()
	}
}

// Resolution is a live view of one destination.
type Resolution struct {
	state  atomic.Pointer[Endpoints]
	ready  chan struct{}
	once   sync.Once
	used   atomic.Int64
	cancel context.CancelFunc
	// dropped is set when the watch is dropped for lack of use.
	dropped atomic.Bool
}

// Dropped reports whether the watch was dropped, unused for the idle
// timeout: its state no longer changes. A caller that keeps a Resolution
// must then Resolve the path again.
func (r *Resolution) Dropped() bool { return r.dropped.Load() }

// Endpoints returns the current snapshot (never nil).
func (r *Resolution) Endpoints() *Endpoints {
	r.used.Store(time.Now().UnixNano())
	return r.state.Load()
}

// Wait returns the snapshot once known, or the current one when ctx ends first.
func (r *Resolution) Wait(ctx context.Context) *Endpoints {
	select {
	case <-r.ready:
	case <-ctx.Done():
	}
	return r.Endpoints()
}

func (r *Resolution) set(e *Endpoints) {
	r.state.Store(e)
	r.once.Do(func() { close(r.ready) })
}

// ProfileWatch is a live view of one profile.
type ProfileWatch struct {
	state  atomic.Pointer[ProfileState]
	ready  chan struct{}
	once   sync.Once
	used   atomic.Int64
	cancel context.CancelFunc
}

// State returns the current snapshot (never nil).
func (p *ProfileWatch) State() *ProfileState {
	p.used.Store(time.Now().UnixNano())
	return p.state.Load()
}

// Wait returns the snapshot once known, or the current one when ctx ends first.
func (p *ProfileWatch) Wait(ctx context.Context) *ProfileState {
	select {
	case <-p.ready:
	case <-ctx.Done():
	}
	return p.State()
}

func (p *ProfileWatch) set(s *ProfileState) {
	p.state.Store(s)
	p.once.Do(func() { close(p.ready) })
}

// Resolve returns the watch of path ("name.ns.svc.cluster.local:port"), starting it if needed.
func (c *Client) Resolve(path string) *Resolution {
	c.mu.Lock()
	r := c.dests[path]
	if r == nil {
		ctx, cancel := context.WithCancel(c.ctx)
		r = &Resolution{ready: make(chan struct{}), cancel: cancel}
		r.state.Store(&Endpoints{})
		r.used.Store(time.Now().UnixNano())
		c.dests[path] = r
		go c.watchDest(ctx, path, r)
	}
	c.mu.Unlock()
	return r
}

// Profile returns the profile watch of path (an authority or "ip:port").
func (c *Client) Profile(path string) *ProfileWatch {
	c.mu.Lock()
	p := c.profiles[path]
	if p == nil {
		ctx, cancel := context.WithCancel(c.ctx)
		p = &ProfileWatch{ready: make(chan struct{}), cancel: cancel}
		p.state.Store(&ProfileState{})
		p.used.Store(time.Now().UnixNano())
		c.profiles[path] = p
		go c.watchProfile(ctx, path, p)
	}
	c.mu.Unlock()
	return p
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

func (c *Client) watchDest(ctx context.Context, path string, r *Resolution) {
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
		}
		failures++
		if !c.sleep(ctx, failures) {
			return
		}
	}
}

func (c *Client) watchProfile(ctx context.Context, path string, p *ProfileWatch) {
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
