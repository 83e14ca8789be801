package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conduit-mesh/conduit/pkg/subnets"
	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
	"github.com/conduit-mesh/conduit/proxy/balance"
	"github.com/conduit-mesh/conduit/proxy/detect"
	"github.com/conduit-mesh/conduit/proxy/discovery"
	"github.com/conduit-mesh/conduit/proxy/inbound"
	"github.com/conduit-mesh/conduit/proxy/internal/h1"
	"github.com/conduit-mesh/conduit/proxy/internal/h2"
	"github.com/conduit-mesh/conduit/proxy/internal/netx"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
	"github.com/conduit-mesh/conduit/proxy/profile"
	"github.com/conduit-mesh/conduit/proxy/tap"
	"github.com/conduit-mesh/conduit/proxy/tlsconf"
)

// HeaderOrigProto marks an HTTP/1 request carried over HTTP/2 between proxies.
const HeaderOrigProto = "Conduit-Orig-Proto"

// maxRetryBody is the largest request body buffered to allow a retry.
const maxRetryBody = 64 << 10

// maxRetries bounds the retries of one request (the budget bounds the rate).
const maxRetries = 3

// maxReroutes bounds how many more endpoints a request is sent to after its
// endpoint could not be reached (netx.ErrUnsent). These need no retryable
// route and spend no budget: the request was not sent, so any method is
// safe to send elsewhere, and it cost the endpoint nothing.
const maxReroutes = 2

// Discovery is what outbound needs from the destination client.
type Discovery interface {
	Resolve(path string) *discovery.Resolution
	Profile(path string) *discovery.ProfileWatch
}

// Options configure the outbound proxy.
type Options struct {
	Log       *slog.Logger
	Metrics   *metrics.Registry
	OrigDst   origdst.Resolver
	Discovery Discovery
	Certs     tlsconf.Certs
	Anchors   *x509.CertPool
	// Namespace and ClusterDomain qualify short names.
	Namespace, ClusterDomain string
	DetectTimeout            time.Duration
	ConnectTimeout           time.Duration
	DiscoveryTimeout         time.Duration
	// Tap receives the requests (nil: tap disabled).
	Tap *tap.Hub
	// NoFastPath sends every HTTP/1 request through net/http instead of
	// the HTTP/1.1 fast path.
	NoFastPath bool
	// MeshedHTTP1 sends HTTP/1 requests to a meshed endpoint on pooled
	// HTTP/1.1 mTLS connections, on the fast path; by default they go
	// through net/http, multiplexed on the endpoint's HTTP/2 connection.
	MeshedHTTP1 bool
	// NoH2FastPath sends HTTP/2 to meshed endpoints with net/http's client
	// instead of the proxy's own (internal/h2).
	NoH2FastPath bool
	// ClusterNetworks hold the cluster's pod and Service addresses: a
	// connection whose original destination is outside them goes there
	// directly, without a discovery lookup (nil: every address is looked
	// up).
	ClusterNetworks []netip.Prefix
}

// Proxy is the outbound side.
type Proxy struct {
	o         Options
	http      *http.Server
	cl        atomic.Pointer[netx.ChanListener] // set by Serve (Shutdown may run in another goroutine)
	tracker   netx.Tracker
	rp        *httputil.ReverseProxy
	h1        *http.Transport
	h2c       *http.Transport
	dialer    netx.Dialer
	sessions  tls.ClientSessionCache
	fast      h1.Server
	fast2     h2.Server
	ups       sync.Map // key string -> *upstream
	lbs       sync.Map // authority -> *lbState
	p2c       balance.P2C
	defBudget *profile.Budget
	// stop ends the sweep (see sweep), at Shutdown.
	stop     chan struct{}
	stopOnce sync.Once
	// norm remembers Normalize's answers for a few hosts (see normalize).
	norm [8]atomic.Pointer[normalized]
	// unansweredLog is when unanswered last logged (Unix ns), so that a
	// flood of refused requests logs once per unansweredLogEvery.
	unansweredLog atomic.Int64
}

// normalized is Normalize's answer for host.
type normalized struct {
	host, name string
	isSvc      bool
}

// normalize is Normalize with the proxy's namespace and cluster domain. A
// short name's normalized form is a string built per call: it is
// remembered, for the last such host of each of a few slots (a proxy's
// clients call few hosts). Other hosts cost Normalize no allocation, and
// are not remembered. (The HTTP/1.1 fast path remembers its connection's
// last host instead.)
func (p *Proxy) normalize(host string) (string, bool) {
	slot := &p.norm[(len(host)+int(host[len(host)-1]))%len(p.norm)]
	if n := slot.Load(); n != nil && n.host == host {
		return n.name, n.isSvc
	}
	name, isSvc := Normalize(host, p.o.Namespace, p.o.ClusterDomain)
	if name != "" && name != host {
		slot.Store(&normalized{host: host, name: name, isSvc: isSvc})
	}
	return name, isSvc
}

// Sweep timing: every sweepEvery, an endpoint that no current endpoint
// set holds and that no request has asked for in idleSweeps sweeps (15
// minutes, longer than the pools' idle timeouts, so its connections have
// closed by then) is forgotten.
const (
	sweepEvery = time.Minute
	idleSweeps = 15
)

// New returns the outbound proxy.
func New(o Options) *Proxy {
	if o.DetectTimeout <= 0 {
		o.DetectTimeout = 10 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = time.Second
	}
	if o.DiscoveryTimeout <= 0 {
		o.DiscoveryTimeout = time.Second
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	p := &Proxy{o: o, sessions: tls.NewLRUClientSessionCache(256), stop: make(chan struct{})}
	p.fast2.Handler = h2Handler{p}
	p.defBudget = profile.NewBudget(0.2, 10, 10*time.Second)
	p.dialer = netx.Dialer{Dialer: net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}}
	p.fast.DialTimeout = 2 * o.ConnectTimeout
	p.h1 = &http.Transport{
		// A request whose connection could not be made goes to another
		// endpoint (sendKeepingBody).
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := p.dialer.DialContext(ctx, network, addr)
			return c, netx.Unsent(err)
		},
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	p.h2c = inbound.H2CTransport(p.dialer.DialContext)
	p.rp = netx.NewReverseProxy(roundTripper{p}, errorHandler, o.Log)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	p.http = netx.NewServer(p, &protos, connContext, o.Log)
	return p
}

type connKey struct{}
type callKey struct{}

// connContext puts the accepted connection's netx.Info in its requests'
// context.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if info := netx.InfoOf(c); info != nil {
		return context.WithValue(ctx, connKey{}, info)
	}
	return ctx
}

func errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("conduit-proxy-error", err.Error())
	w.WriteHeader(errorStatus(err))
}

// errorStatus is the status answering a routing or forwarding error: 503
// for a Service without endpoints, 504 for a deadline, else 502.
func errorStatus(err error) int {
	var se statusError
	switch {
	case errors.As(err, &se):
		return int(se)
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

type statusError int

func (s statusError) Error() string { return http.StatusText(int(s)) }

// unansweredLogEvery is how often unanswered logs at most.
const unansweredLogEvery = 10 * time.Second

// logUnanswered logs the refusal of target, for which the destination
// service gave no answer within DiscoveryTimeout, at most once per
// unansweredLogEvery.
func (p *Proxy) logUnanswered(target string) {
	now, last := time.Now().UnixNano(), p.unansweredLog.Load()
	if now-last >= int64(unansweredLogEvery) && p.unansweredLog.CompareAndSwap(last, now) {
		p.o.Log.Warn("outbound: no answer from the destination service; refused rather than sent without mTLS (logged once per 10s)",
			"target", target, "timeout", p.o.DiscoveryTimeout)
	}
}

// unanswered logs the refusal of a request to target (logUnanswered) and
// returns its error: a 503 that says why.
func (p *Proxy) unanswered(target string) error {
	p.logUnanswered(target)
	return fmt.Errorf("%w: the destination service gave no answer for %s within %v, and the proxy does not send to a target it cannot check for mTLS",
		statusError(http.StatusServiceUnavailable), target, p.o.DiscoveryTimeout)
}

// Serve accepts on l until it is closed.
func (p *Proxy) Serve(l net.Listener) error {
	cl := netx.NewChanListener(l.Addr())
	p.cl.Store(cl)
	go func() { _ = p.http.Serve(cl) }()
	go p.sweepLoop()
	if err := p.tracker.Serve(l, p.handle); err != nil {
		return fmt.Errorf("outbound: %w", err)
	}
	return nil
}

// Shutdown drains in-flight requests and connections until ctx ends.
func (p *Proxy) Shutdown(ctx context.Context) error {
	var err error
	p.stopOnce.Do(func() { close(p.stop) })
	p.fast.Shutdown()
	p.fast2.Shutdown()
	if p.cl.Load() != nil {
		err = p.http.Shutdown(ctx)
	}
	if werr := p.tracker.Wait(ctx); err == nil {
		err = werr
	}
	if err != nil {
		_ = p.http.Close()
	}
	p.h1.CloseIdleConnections()
	p.h2c.CloseIdleConnections()
	p.ups.Range(func(_, v any) bool {
		v.(*upstream).closeIdle()
		return true
	})
	return err
}

// lookup bounds the discovery waits of one routing decision (a
// connection's original destination, a request's, an opaque connection's
// Service) by one deadline, set when the first of them has to wait: a
// target the destination service does not answer for is refused
// DiscoveryTimeout after the proxy began to wait for it, however many names
// (original destination, Service, endpoints, split backend) routing looks
// up. The zero value is ready; it allocates only when it waits.
type lookup struct {
	until  time.Time // the deadline; zero until the first wait sets it
	ctx    context.Context
	cancel context.CancelFunc
}

// wait returns the context the waits of l end with, parent's child.
func (l *lookup) wait(p *Proxy, parent context.Context) context.Context {
	if l.ctx == nil {
		if l.until.IsZero() {
			l.until = time.Now().Add(p.o.DiscoveryTimeout)
		}
		l.ctx, l.cancel = context.WithDeadline(parent, l.until)
	}
	return l.ctx
}

// waited tells whether l had to wait.
func (l *lookup) waited() bool { return l.ctx != nil }

// done releases what wait allocated.
func (l *lookup) done() {
	if l.cancel != nil {
		l.cancel()
	}
}

// waitProfile returns the profile state of path, waiting within l for the
// destination service's first answer (Known false without one). Without a
// destination service, every target is known to be outside the mesh.
func (p *Proxy) waitProfile(ctx context.Context, l *lookup, path string) *discovery.ProfileState {
	if p.o.Discovery == nil {
		return &discovery.ProfileState{Known: true}
	}
	pw := p.o.Discovery.Profile(path)
	if st := pw.State(); st.Known {
		return st
	}
	return pw.Wait(l.wait(p, ctx))
}

// outsideState is the profile state of a connection to an address outside
// the cluster networks: known, and not a Service. Shared, never written.
var outsideState = &discovery.ProfileState{Known: true}

// origDstProfile is waitProfile for an original destination: an address
// outside the cluster networks cannot be a pod or a Service, and is not
// looked up (nor does it depend on the destination service being there).
func (p *Proxy) origDstProfile(ctx context.Context, l *lookup, dst netip.AddrPort) *discovery.ProfileState {
	if p.outside(dst.Addr()) {
		return outsideState
	}
	return p.waitProfile(ctx, l, dst.String())
}

// outside reports whether a is outside the cluster networks.
func (p *Proxy) outside(a netip.Addr) bool {
	return p.o.ClusterNetworks != nil && !subnets.Contains(p.o.ClusterNetworks, a)
}

func (p *Proxy) handle(raw net.Conn) {
	info := &netx.Info{Stats: p.o.Metrics.Open(metrics.TCPKey{Direction: "outbound", Peer: "src"})}
	dst, err := p.o.OrigDst.OriginalDst(raw)
	if err == nil {
		info.OrigDst = dst
	}
	c := netx.Wrap(raw, info)
	var st *discovery.ProfileState
	var l lookup
	defer l.done()
	if info.OrigDst.IsValid() {
		st = p.origDstProfile(context.Background(), &l, info.OrigDst)
	}
	proto := detect.Opaque
	if st == nil || st.Profile == nil || !st.Profile.Opaque {
		if proto, _, err = netx.Peek(c, p.o.DetectTimeout); err != nil {
			_ = c.Close()
			info.Done()
			return
		}
	}
	switch proto {
	case detect.HTTP1, detect.HTTP2:
		if l.waited() && !st.Known {
			// Unanswered: the first request's waits end with this one's
			// (after the timeout in all, not after one per name). An
			// answered wait hands nothing on: a request that comes later
			// has the whole timeout for the names it looks up.
			info.SetLookupDeadline(l.until)
		}
		if proto == detect.HTTP1 && !p.o.NoFastPath {
			p.serveFast(c, info)
			return
		}
		if proto == detect.HTTP2 && !p.o.NoH2FastPath {
			p.serveH2(c, info)
			return
		}
		oc := &netx.Owned{Conn: c, Info: info}
		if err := p.cl.Load().Push(oc); err != nil {
			_ = oc.Close()
		}
	default:
		p.opaque(c, info, st)
	}
}

// opaque forwards an opaque connection whose original destination's
// profile st the handler got (or not).
func (p *Proxy) opaque(c net.Conn, info *netx.Info, st *discovery.ProfileState) {
	defer info.Done()
	defer c.Close()
	if !info.OrigDst.IsValid() {
		p.o.Log.Debug("opaque connection without original destination; closing", "remote", c.RemoteAddr())
		return
	}
	if st == nil || !st.Known {
		// Logged; a reset: the application sees a refusal, not an empty
		// answer.
		p.logUnanswered(info.OrigDst.String())
		netx.Abort(c)
		return
	}
	target := &discovery.Addr{Addr: info.OrigDst.String()}
	switch {
	case st.Endpoint != nil:
		target = st.Endpoint
	case st.Profile != nil && st.Profile.FQN != "":
		name := net.JoinHostPort(st.Profile.FQN, strconv.Itoa(int(info.OrigDst.Port())))
		// Its own wait: the handler's was answered, and detection may
		// have taken a while since.
		var l lookup
		defer l.done()
		eps, exists, known := p.endpoints(context.Background(), &l, name)
		switch ep := p.p2c.Pick(eps); {
		case !known:
			// A Service whose endpoints (and their identities) are
			// not known: refused, as above.
			p.logUnanswered(name)
			netx.Abort(c)
			return
		case ep != nil:
			target = ep.Value.(*upstream).addr
		case exists:
			// A Service without endpoints, as HTTP's 503: its cluster
			// IP has none either, or has one the destination service
			// has not streamed yet, whose identity it does not know.
			p.o.Log.Debug("outbound opaque connection to a Service without endpoints; reset", "service", name)
			netx.Abort(c)
			return
		}
	}
	out, err := p.dialOpaque(target)
	if err != nil {
		// As a refused connect would be without the mesh, and as when a
		// peer proxy's application refuses (PipeAborting): a reset, where
		// the application read a clean end of stream before.
		p.o.Log.Debug("outbound opaque connect failed", "target", target.Addr, "err", err)
		netx.Abort(c)
		return
	}
	defer out.Close()
	// out's Info counts its bytes and, once out is closed, its end,
	// classified by the failure Pipe noted.
	if _, meshed := out.(*tls.Conn); meshed {
		// A peer proxy resets the connection when its application refused
		// it: the application's connection is reset in turn.
		netx.PipeAborting(c, out)
		return
	}
	_ = netx.Pipe(c, out, metrics.TCP{})
}

// dialOpaque dials target for an opaque connection on a goroutine that
// exits after it. The TLS handshake (key exchange, certificate
// verification) grows its goroutine's stack, and the goroutine that
// copies the connection's bytes would keep that stack for the
// connection's life, idle ones included: the runtime shrinks a stack by
// half at most per GC, and only while less than a quarter of it is used
// (with the inbound's handshake, 7-9 KiB less stack per idle opaque
// connection across both proxies; see TestIdleOpaqueMemory in proxy/app).
// It costs a goroutine per connection, nothing per read or write.
func (p *Proxy) dialOpaque(target *discovery.Addr) (net.Conn, error) {
	type dialed struct {
		c   net.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), p.o.ConnectTimeout*2)
		defer cancel()
		c, _, err := p.dial(ctx, target, tlsconf.ALPNOpaque)
		done <- dialed{c, err}
	}()
	d := <-done
	return d.c, d.err
}

// dial connects to addr, with mTLS when it has an identity (then the
// connection is a *tls.Conn, which net/http needs to speak HTTP/2). Closing
// it closes its stats.
func (p *Proxy) dial(ctx context.Context, a *discovery.Addr, alpn string) (net.Conn, *netx.Info, error) {
	raw, err := p.dialer.DialContext(ctx, "tcp", a.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("outbound: connect %s: %w", a.Addr, err)
	}
	info := &netx.Info{TLS: a.Identity != "", PeerID: a.Identity}
	info.Stats = p.o.Metrics.Open(metrics.TCPKey{Direction: "outbound", Peer: "dst", TLS: info.TLS, PeerID: a.Identity, PeerLabels: a.Labels})
	var c net.Conn = &netx.Owned{Conn: netx.Wrap(raw, info), Info: info}
	if a.Identity == "" {
		return c, info, nil
	}
	tc := tls.Client(c, tlsconf.Client(p.o.Certs, p.o.Anchors, a.ServerName, alpn, p.sessions))
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, nil, fmt.Errorf("outbound: mTLS to %s (%s): %w", a.Addr, a.ServerName, err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != alpn {
		_ = tc.Close()
		return nil, nil, fmt.Errorf("outbound: %s negotiated ALPN %q, want %q", a.Addr, got, alpn)
	}
	return tc, info, nil
}

// upstream is one endpoint and, when meshed, its HTTP/2 connection pool;
// fast is its HTTP/1.1 pool for the fast path, made on first use.
type upstream struct {
	addr     *discovery.Addr
	used     atomic.Bool // upstreamFor returned it since the last sweep
	idle     int         // sweeps since then (the sweep's own)
	h2       h2Client
	viaH2    func(*http.Request) (*http.Response, error) // u.sendH2 for h1.Call, bound once (a method value per request would allocate); nil when unmeshed
	fastOnce sync.Once
	fast     *h1.Pool
	// plain2 is the HTTP/2 (h2c) client of an unmeshed endpoint, for the
	// HTTP/2 fast path; made on first use.
	plain2Once sync.Once
	plain2     *h2.Client
	// switching sends a meshed endpoint the requests that ask to switch
	// protocols (Upgrade: WebSockets), which HTTP/2 cannot carry: over
	// mTLS HTTP/1.1 (ALPN http/1.1), a connection per request; made on
	// first use.
	switchingOnce sync.Once
	switching     transportClient
}

func (p *Proxy) upstreamFor(a *discovery.Addr) *upstream {
	key := a.Addr + "|" + a.ServerName + "|" + a.Labels
	if v, ok := p.ups.Load(key); ok {
		u := v.(*upstream)
		if !u.used.Load() { // a load, not a store, on the request path
			u.used.Store(true)
		}
		return u
	}
	u := &upstream{addr: a}
	u.used.Store(true)
	if a.Identity != "" {
		dial := func(ctx context.Context) (net.Conn, error) {
			c, _, err := p.dial(ctx, a, tlsconf.ALPNH2)
			return c, err
		}
		if p.o.NoH2FastPath {
			var protos http.Protocols
			protos.SetHTTP2(true)
			u.h2 = transportClient{&http.Transport{
				Protocols: &protos,
				DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					c, err := dial(ctx)
					return c, netx.Unsent(err)
				},
				// One connection made at a time (for HTTP/2, net/http's
				// limit counts only the connections being made): a burst
				// of requests to a new endpoint waits for one connection
				// and shares it, instead of each dialing and handshaking
				// its own.
				MaxConnsPerHost:    1,
				DisableCompression: true,
				IdleConnTimeout:    10 * time.Minute,
				HTTP2:              &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 10 * time.Second},
			}, u.peerRefused}
		} else {
			// The peer is a Conduit proxy, which has no PING policy: a
			// quiet stream's peer is checked every PingTimeout (15 s).
			u.h2 = &h2.Client{Dial: dial, DialTimeout: 2 * p.o.ConnectTimeout, IdleTimeout: 10 * time.Minute,
				MinPingInterval: 15 * time.Second, Refused: u.peerRefused}
		}
		u.viaH2 = u.sendH2
	}
	v, _ := p.ups.LoadOrStore(key, u)
	return v.(*upstream)
}

// closeIdle closes the upstream's idle connections.
func (u *upstream) closeIdle() {
	if u.h2 != nil {
		u.h2.CloseIdle()
	}
	if u.plain2 != nil {
		u.plain2.CloseIdle()
	}
	if u.fast != nil {
		u.fast.CloseIdle(true)
	}
}

// h2Client is a meshed endpoint's HTTP/2 connection pool: the proxy's
// own (h2.Client), or net/http's.
type h2Client interface {
	RoundTrip(*http.Request) (*http.Response, error)
	CloseIdle()
}

// transportClient is net/http's client to a meshed endpoint: HTTP/2 (with
// the HTTP/2 fast path off), or HTTP/1.1 for the requests that switch
// protocols. Its dial errors are marked netx.ErrUnsent, and it does not
// close a request body (net/http would, even when it could not connect), so that a request
// it could not send can go to another endpoint. It keeps a small body (of
// known length) for as long as the response head takes: a request the
// endpoint's proxy refused unprocessed (refused says so) goes elsewhere
// with it, as when no connection could be made.
type transportClient struct {
	*http.Transport
	refused func(*http.Response) error
}

func (t transportClient) RoundTrip(r *http.Request) (*http.Response, error) {
	var kept []byte
	replay := r.Body == nil || r.Body == http.NoBody
	if !replay {
		if r.ContentLength > 0 && r.ContentLength <= netx.SmallBody && len(r.Trailer) == 0 {
			kept = make([]byte, r.ContentLength)
			if _, err := io.ReadFull(r.Body, kept); err != nil {
				return nil, fmt.Errorf("outbound: read request body: %w", err)
			}
			_ = r.Body.Close()
			r.Body, replay = io.NopCloser(bytes.NewReader(kept)), true
		}
	}
	restore := func() {
		if kept != nil {
			r.Body = io.NopCloser(bytes.NewReader(kept))
		}
	}
	resp, err := sendKeepingBody(t.Transport, r)
	if err != nil {
		if errors.Is(err, netx.ErrUnsent) {
			restore()
		}
		return nil, err
	}
	if rerr := t.refused(resp); rerr != nil {
		_ = resp.Body.Close()
		if !replay {
			return nil, rerr
		}
		restore()
		return nil, netx.Unsent(rerr)
	}
	return resp, nil
}

// keepOpen is a body whose Close is left to its owner.
type keepOpen struct{ io.ReadCloser }

func (keepOpen) Close() error { return nil }

func (t transportClient) CloseIdle() { t.CloseIdleConnections() }

type lbState struct {
	res *discovery.Resolution
	cur atomic.Pointer[lbSnap]
	mu  sync.Mutex
}

type lbSnap struct {
	src *discovery.Endpoints
	eps []*balance.Endpoint
}

// endpoints returns the balancer set of a service name; exists is false
// when the name is not a Service, and known is false when the destination
// service has not answered for it (within l's deadline).
func (p *Proxy) endpoints(ctx context.Context, l *lookup, name string) (eps []*balance.Endpoint, exists, known bool) {
	if p.o.Discovery == nil {
		return nil, false, true
	}
	v, ok := p.lbs.Load(name)
	if !ok {
		v, _ = p.lbs.LoadOrStore(name, &lbState{res: p.o.Discovery.Resolve(name)})
	}
	lb := v.(*lbState)
	if lb.res.Dropped() {
		// Unused for a while, its watch was dropped and its endpoints
		// no longer change: watch the name again. (The sweep may have
		// removed it meanwhile.)
		nlb := &lbState{res: p.o.Discovery.Resolve(name)}
		if p.lbs.CompareAndSwap(name, lb, nlb) {
			lb = nlb
		} else {
			v, _ = p.lbs.LoadOrStore(name, nlb)
			lb = v.(*lbState)
		}
	}
	src := lb.res.Endpoints()
	if !src.Known {
		src = lb.res.Wait(l.wait(p, ctx))
	}
	snap := lb.cur.Load()
	if snap == nil || snap.src != src {
		lb.mu.Lock()
		if snap = lb.cur.Load(); snap == nil || snap.src != src {
			old := map[string]*balance.Endpoint{}
			if snap != nil {
				for _, e := range snap.eps {
					old[e.Value.(*upstream).addr.Addr] = e
				}
			}
			ns := &lbSnap{src: src}
			for _, a := range src.Addrs {
				if e, ok := old[a.Addr]; ok && e.Value.(*upstream).addr == a {
					ns.eps = append(ns.eps, e)
					continue
				}
				ns.eps = append(ns.eps, balance.NewEndpoint(p.upstreamFor(a), a.Weight))
			}
			lb.cur.Store(ns)
			snap = ns
		}
		lb.mu.Unlock()
	}
	return snap.eps, src.Exists, src.Known
}

// sweepLoop runs sweep every sweepEvery until Shutdown.
func (p *Proxy) sweepLoop() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.sweep()
		}
	}
}

// sweep forgets what the proxy no longer routes to, which otherwise grows
// with every pod a rollout replaces and every original destination called:
//   - a name whose watch discovery dropped, unused (endpoints re-watches
//     it on its next request);
//   - an endpoint that no current endpoint set holds and that no request
//     has asked for in idleSweeps sweeps; its idle connections are closed.
//     A request still on it finishes on it.
func (p *Proxy) sweep() {
	live := map[*upstream]struct{}{}
	p.lbs.Range(func(k, v any) bool {
		lb := v.(*lbState)
		if lb.res.Dropped() {
			p.lbs.CompareAndDelete(k, lb)
			return true
		}
		if snap := lb.cur.Load(); snap != nil {
			for _, e := range snap.eps {
				live[e.Value.(*upstream)] = struct{}{}
			}
		}
		return true
	})
	p.ups.Range(func(k, v any) bool {
		u := v.(*upstream)
		used := u.used.Swap(false)
		if _, ok := live[u]; ok || used {
			u.idle = 0
			return true
		}
		if u.idle++; u.idle < idleSweeps {
			return true
		}
		if p.ups.CompareAndDelete(k, u) {
			u.closeIdle()
		}
		return true
	})
}

// endAttempt ends a request to ep that started at t0 and ended with err.
// An endpoint that could not take it (not sent; or refused unprocessed,
// whose body of unknown length was not kept, as gRPC's) is avoided for a
// while: Pick prefers the others. Otherwise its latency counts.
func endAttempt(ep *balance.Endpoint, t0 int64, err error) {
	if err != nil && (errors.Is(err, netx.ErrUnsent) || errors.Is(err, h2.ErrRefused)) {
		ep.Failed()
		return
	}
	ep.Done(t0, balance.DefaultDecay)
}

// reroute picks where a request of cl goes after failed (now Failing)
// could not take it, for its reroutes+1-th time: an endpoint that is not
// Failing, or nil when there is none, the request has no Service endpoints
// to choose from, or it was rerouted maxReroutes times. Pick returns a
// Failing endpoint only when all are: when all of a Service's endpoints
// fail, a request costs one attempt, not three, and adds no load to a
// Service that is down.
func (p *Proxy) reroute(cl *call, failed *balance.Endpoint, reroutes int) *balance.Endpoint {
	if cl.fixed != nil || len(cl.eps) == 0 || reroutes >= maxReroutes {
		return nil
	}
	if ep := p.p2c.Pick(cl.eps); ep != failed && !ep.Failing() {
		return ep
	}
	return nil
}

// call is the routing decision of one request.
type call struct {
	authority string
	eps       []*balance.Endpoint // balanced service endpoints
	fixed     *balance.Endpoint   // or a single endpoint
	route     *profile.Route
	budget    *profile.Budget
}

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, done := p.tracker.Switching(r)
	defer done()
	req, err := p.route(r)
	if err != nil {
		errorHandler(w, r, err)
		return
	}
	w, req, cancel := netx.Relay(w, req)
	defer cancel()
	p.rp.ServeHTTP(w, req)
}

// route decides where a served request goes and returns it ready for
// roundTripper, its call in its context.
func (p *Proxy) route(r *http.Request) (*http.Request, error) {
	cl := &call{}
	if err := p.routeInto(r, cl); err != nil {
		return nil, err
	}
	return r.WithContext(context.WithValue(r.Context(), callKey{}, cl)), nil
}

// routeInto decides where a served request goes into cl, and readies r
// for roundTripper.roundTrip.
func (p *Proxy) routeInto(r *http.Request, cl *call) error {
	info, _ := r.Context().Value(connKey{}).(*netx.Info)
	if info == nil {
		info = &netx.Info{}
	}
	delete(r.Header, HeaderOrigProto)
	prof, err := p.routeCall(r.Context(), cl, r.Host, info)
	if err != nil {
		return err
	}
	cl.route = prof.Match(r)
	r.RequestURI = ""
	r.URL.Scheme = "http"
	r.URL.Host = "upstream"
	return nil
}

// routeCall decides where a request for host goes: the balanced endpoints
// of a Service (or of its traffic split backend) with its retry budget, or
// a single endpoint. It returns the Service's profile, for the caller to
// match the route. A Service without endpoints is a statusError(503),
// counted here.
func (p *Proxy) routeCall(ctx context.Context, cl *call, host string, info *netx.Info) (*profile.Profile, error) {
	var name string
	var isSvc bool
	if host != "" {
		name, isSvc = p.normalize(host)
	}
	return p.routeNamed(ctx, cl, host, name, isSvc, info)
}

// routeNamed is routeCall with host already normalized: name and isSvc
// are Normalize's. Its discovery waits share one deadline: for the
// connection's first request, that of the handler's wait when it went
// unanswered (see handle).
func (p *Proxy) routeNamed(ctx context.Context, cl *call, host, name string, isSvc bool, info *netx.Info) (*profile.Profile, error) {
	if info.OrigDst.IsValid() && p.outside(info.OrigDst.Addr()) {
		// Sent outside the cluster: the application's DNS answer is not
		// a pod or a Service, whatever the Host header says ("example.com"
		// reads as Service example of namespace com).
		cl.authority = host
		cl.fixed = balance.NewEndpoint(p.upstreamFor(&discovery.Addr{Addr: info.OrigDst.String()}), 1)
		return nil, nil
	}
	l := lookup{until: info.TakeLookupDeadline()}
	defer l.done()
	var st *discovery.ProfileState
	if isSvc {
		st = p.waitProfile(ctx, &l, name)
	} else if info.OrigDst.IsValid() {
		st = p.origDstProfile(ctx, &l, info.OrigDst)
		if st.Profile != nil && st.Profile.FQN != "" {
			name, isSvc = net.JoinHostPort(st.Profile.FQN, strconv.Itoa(int(info.OrigDst.Port()))), true
		}
	}
	cl.authority = host
	var prof *profile.Profile
	// answered: the destination service said what the target is.
	answered := st != nil && st.Known
	if isSvc {
		cl.authority = name
		dst := name
		if split := st.Profile.PickSplit(); split != "" {
			dst = split
		}
		eps, exists, known := p.endpoints(ctx, &l, dst)
		if dst != name && len(eps) == 0 {
			// A split backend without endpoints (scaled to zero, or not a
			// Service): fall back to the apex service.
			eps, exists, known = p.endpoints(ctx, &l, name)
		}
		answered = answered && known
		switch {
		case len(eps) > 0:
			cl.eps = eps
		case exists:
			p.o.Metrics.Response(metrics.RequestKey{Direction: "outbound", Authority: name}, http.StatusServiceUnavailable, true, 0)
			return nil, statusError(http.StatusServiceUnavailable)
		}
		prof = st.Profile
		cl.budget = p.defBudget
		if st.Profile != nil && st.Profile.Budget != nil {
			cl.budget = st.Profile.Budget
		}
	}
	if len(cl.eps) == 0 {
		switch {
		case st != nil && st.Endpoint != nil:
			cl.fixed = balance.NewEndpoint(p.upstreamFor(st.Endpoint), 1)
		case info.OrigDst.IsValid() && !answered:
			// Without the destination service's answer the proxy cannot
			// tell a meshed target (mTLS, its identity) from another: it
			// refuses rather than send plaintext.
			p.o.Metrics.Response(metrics.RequestKey{Direction: "outbound", Authority: cl.authority}, http.StatusServiceUnavailable, true, 0)
			return nil, p.unanswered(host)
		case info.OrigDst.IsValid():
			cl.fixed = balance.NewEndpoint(p.upstreamFor(&discovery.Addr{Addr: info.OrigDst.String()}), 1)
		default:
			return nil, fmt.Errorf("outbound: %q is not a known service and the connection has no original destination", host)
		}
	}
	return prof, nil
}

type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	return rt.roundTrip(r, r.Context().Value(callKey{}).(*call))
}

// roundTrip sends r as cl decided.
func (rt roundTripper) roundTrip(r *http.Request, cl *call) (*http.Response, error) {
	p := rt.p
	var body []byte
	retryable := cl.route != nil && cl.route.Retryable
	if retryable && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength <= 0 || r.ContentLength > maxRetryBody {
			retryable = false
		} else {
			var err error
			if body, err = io.ReadAll(io.LimitReader(r.Body, maxRetryBody+1)); err != nil {
				return nil, fmt.Errorf("outbound: read request body: %w", err)
			}
			_ = r.Body.Close()
			if len(body) > maxRetryBody {
				retryable = false
				r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
			}
		}
	}
	if cl.budget != nil {
		cl.budget.Deposit()
	}
	ctx := r.Context()
	var cancel context.CancelFunc = func() {}
	if cl.route != nil && cl.route.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, cl.route.Timeout)
	}
	routeName := ""
	if cl.route != nil {
		routeName = cl.route.Name
	}
	reroutes := 0
	var next *balance.Endpoint // where a request that was not sent goes
	for attempt, tries := 0, 0; ; tries++ {
		ep := cl.fixed
		switch {
		case next != nil:
			ep, next = next, nil
		case ep == nil:
			ep = p.p2c.Pick(cl.eps)
		}
		u := ep.Value.(*upstream)
		req := r
		if tries > 0 || ctx != r.Context() {
			req = r.Clone(ctx)
		}
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		req.URL.Host = u.addr.Addr
		key := metrics.RequestKey{Direction: "outbound", Authority: cl.authority, Route: routeName,
			TLS: u.h2 != nil, PeerID: u.addr.Identity, PeerLabels: u.addr.Labels}
		p.o.Metrics.Request(key)
		var tp *tap.Tap
		if p.o.Tap.Observing() {
			// Each attempt is tapped, as each is counted.
			tp = p.o.Tap.Start(tap.Request{Direction: tapv1.Direction_OUTBOUND, Source: r.RemoteAddr, Destination: u.addr.Addr,
				TLS: key.TLS, ServerID: u.addr.Identity, DestinationLabels: u.addr.LabelMap, Route: routeName,
				Method: r.Method, Scheme: "http", Authority: cl.authority, Path: r.URL.Path})
		}
		start := time.Now()
		t0 := ep.Start()
		resp, err := p.send(u, req)
		endAttempt(ep, t0, err)
		unsent := err != nil && errors.Is(err, netx.ErrUnsent)
		if err != nil {
			p.o.Metrics.Response(key, 0, true, time.Since(start))
			tp.Fail(err)
			if unsent && ctx.Err() == nil {
				if next = p.reroute(cl, ep, reroutes); next != nil {
					// Not sent: its body is unread or restored (netx.ErrUnsent), on req.
					r.Body = req.Body
					reroutes++
					continue
				}
			}
			if retryable && attempt < maxRetries && ctx.Err() == nil && cl.budget.Withdraw() {
				attempt++
				continue
			}
			cancel()
			return nil, err
		}
		failure := profile.IsFailure(cl.route, resp.StatusCode)
		if gs := resp.Header.Get("Grpc-Status"); gs != "" && gs != "0" {
			failure = true
		}
		tp.Response(resp.StatusCode)
		if failure && retryable && attempt < maxRetries && ctx.Err() == nil && cl.budget.Withdraw() {
			attempt++
			p.o.Metrics.Response(key, resp.StatusCode, true, time.Since(start))
			n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			tp.End(uint64(n), resp.Header.Get("Grpc-Status"), true, nil)
			continue
		}
		body := &metrics.Body{ReadCloser: resp.Body, Reg: p.o.Metrics, Key: key, Start: start, Resp: resp,
			Class: cl.route, OnDone: cancel}
		if tp != nil {
			body.OnEnd = tp
		}
		resp.Body = body
		return resp, nil
	}
}

var origProtoH1 = []string{"HTTP/1.1"}

// sendH2 sends an HTTP/1 request from the fast path on the endpoint's
// HTTP/2 connection.
func (u *upstream) sendH2(r *http.Request) (*http.Response, error) {
	r.Header[HeaderOrigProto] = origProtoH1
	r.URL.Scheme, r.URL.Host = "https", u.addr.Addr
	resp, err := u.h2.RoundTrip(r)
	if err != nil {
		return nil, u.refused(err)
	}
	return resp, nil
}

// peerRefused is the error of a response from the endpoint's proxy that
// refused the request unprocessed (netx.HeaderUnsent: its application does
// not accept connections), saying why; nil for any other response.
func (u *upstream) peerRefused(resp *http.Response) error {
	if _, ok := resp.Header[netx.HeaderUnsent]; !ok {
		return nil
	}
	return u.refusedBy(resp.Header.Get("Conduit-Proxy-Error"))
}

// refusedBy is the error of a request the endpoint's proxy refused
// unprocessed for reason (its Conduit-Proxy-Error). It is an h2.ErrRefused
// (a REFUSED_STREAM in an answer): a request whose body was not kept is
// refused in turn to an HTTP/2 client, as gRPC's calls are.
func (u *upstream) refusedBy(reason string) error {
	return peerRefusal{fmt.Errorf("outbound: %s refused the request unprocessed: %s", u.addr.Addr, reason)}
}

// peerRefusal is an error of refusedBy: h2.ErrRefused, with its own message.
type peerRefusal struct{ error }

func (e peerRefusal) Unwrap() error      { return e.error }
func (peerRefusal) Is(target error) bool { return target == h2.ErrRefused }

// refused says why a meshed endpoint refused a request, for the error that
// reaches the client when no other endpoint took it.
func (u *upstream) refused(err error) error {
	if pr := (peerRefusal{}); errors.As(err, &pr) {
		return err // says so already
	}
	if errors.Is(err, h2.ErrRefused) {
		return fmt.Errorf("outbound: %s refused the request unprocessed (a meshed pod's proxy does when its application does not accept the connection): %w", u.addr.Addr, err)
	}
	return err
}

// switchingClient is u.switching, made on first use.
func (p *Proxy) switchingClient(u *upstream) transportClient {
	u.switchingOnce.Do(func() {
		u.switching = transportClient{&http.Transport{
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, _, err := p.dial(ctx, u.addr, tlsconf.ALPNHTTP1)
				return c, netx.Unsent(err)
			},
			// A switched connection is not reused; one refused by the
			// endpoint (no 101) may be, briefly.
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		}, u.peerRefused}
	})
	return u.switching
}

func (p *Proxy) send(u *upstream, r *http.Request) (*http.Response, error) {
	upgrade := r.Header.Get("Upgrade") != ""
	switch {
	case u.h2 != nil: // meshed: mTLS, which the clients dial themselves
		var rt http.RoundTripper = u.h2
		if upgrade {
			rt = p.switchingClient(u) // HTTP/2 cannot carry it
		} else if r.ProtoMajor == 1 {
			r.Header[HeaderOrigProto] = origProtoH1
		}
		r.URL.Scheme = "https"
		resp, err := rt.RoundTrip(r)
		if err != nil {
			return nil, u.refused(err)
		}
		return resp, nil
	case r.ProtoMajor == 2 && p.o.NoH2FastPath:
		netx.NoDefaultUserAgent(r)
		return p.h2c.RoundTrip(r)
	case r.ProtoMajor == 2:
		u.plain2Once.Do(func() {
			u.plain2 = &h2.Client{Dial: func(ctx context.Context) (net.Conn, error) {
				return p.dialer.DialContext(ctx, "tcp", u.addr.Addr)
			}, DialTimeout: 2 * p.o.ConnectTimeout, IdleTimeout: 90 * time.Second}
		})
		return u.plain2.RoundTrip(r)
	default:
		if err := netx.BufferSmallBody(r); err != nil {
			return nil, err
		}
		return sendKeepingBody(p.h1, r)
	}
}

// sendKeepingBody sends r on t, an http.Transport whose dial errors are
// netx.ErrUnsent, with r's body kept open: the transport closes a body even
// when it could not connect, and a request not sent goes to another
// endpoint with that body, unread. (Its owner, the server, closes it. A
// body in memory needs no such care, and net/http writes it with the head
// only unwrapped.) transportClient sends on it; the unmeshed endpoints'
// HTTP/1.1 (p.h1) too, without transportClient's copy of a small body,
// which BufferSmallBody has already made.
func sendKeepingBody(t *http.Transport, r *http.Request) (*http.Response, error) {
	netx.NoDefaultUserAgent(r)
	if r.Body != nil && r.Body != http.NoBody && !netx.InMemoryBody(r.Body) {
		if _, ok := r.Body.(keepOpen); !ok {
			r.Body = keepOpen{r.Body}
		}
	}
	return t.RoundTrip(r)
}
