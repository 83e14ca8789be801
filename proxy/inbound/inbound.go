package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/conduit-mesh/conduit/pkg/ports"
	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
	"github.com/conduit-mesh/conduit/proxy/detect"
	"github.com/conduit-mesh/conduit/proxy/internal/h1"
	"github.com/conduit-mesh/conduit/proxy/internal/h2"
	"github.com/conduit-mesh/conduit/proxy/internal/netx"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
	"github.com/conduit-mesh/conduit/proxy/tap"
	"github.com/conduit-mesh/conduit/proxy/tlsconf"
)

// Header names shared with the outbound side.
const (
	HeaderClientID  = "Conduit-Client-Id"
	HeaderOrigProto = "Conduit-Orig-Proto"
)

// Certs is what inbound needs from the identity manager.
type Certs interface {
	tlsconf.Certs
	Name() string
}

// Options configure the inbound proxy.
type Options struct {
	Log      *slog.Logger
	Metrics  *metrics.Registry
	OrigDst  origdst.Resolver
	Identity Certs
	TLS      *tls.Config // server mTLS configuration
	// OpaquePort are the ports whose connections skip protocol detection
	// (as written: a "1-65535" costs one range, not a 65,535-entry map).
	OpaquePort []ports.Range
	// OwnPorts are the proxy's own listening ports (admin, tap, outbound,
	// inbound). A connection redirected to one of them is refused: passed
	// on to 127.0.0.1, it would reach the admin server as a loopback
	// client, which may POST /shutdown. proxy-init never redirects them;
	// this holds when something else set the rules up.
	OwnPorts []uint16
	// Target, when valid, replaces 127.0.0.1:<original port>.
	Target netip.AddrPort
	// IPv6 is set when the proxy serves IPv6 (CONDUIT_PROXY_IPV6 is not
	// off and the host has IPv6): an application that refuses a connection
	// on 127.0.0.1 is then tried on [::1] at the same port (see dialApp).
	IPv6           bool
	DetectTimeout  time.Duration
	ConnectTimeout time.Duration
	// Tap receives the requests (nil: tap disabled).
	Tap *tap.Hub
	// NoFastPath serves every HTTP/1 request with net/http instead of the
	// HTTP/1.1 fast path.
	NoFastPath bool
	// NoH2FastPath serves HTTP/2 from meshed proxies with net/http's
	// server instead of the proxy's own (internal/h2).
	NoH2FastPath bool
}

// Proxy is the inbound side.
type Proxy struct {
	o       Options
	http    *http.Server
	cl      atomic.Pointer[netx.ChanListener] // set by Serve (Shutdown may run in another goroutine)
	tracker netx.Tracker
	rp      *httputil.ReverseProxy
	h1      *http.Transport
	h2c     *http.Transport
	dialer  netx.Dialer
	fast    h1.Server
	fast2   h2.Server
	apps    sync.Map // target -> *h1.Pool
	apps2   sync.Map // target -> *h2.Client
}

// New returns the inbound proxy.
func New(o Options) *Proxy {
	if o.DetectTimeout <= 0 {
		o.DetectTimeout = 10 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = time.Second
	}
	p := &Proxy{o: o}
	p.fast2.Handler = h2Handler{p}
	p.dialer = netx.Dialer{Dialer: net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}}
	p.fast.DialTimeout = 2 * o.ConnectTimeout
	p.h1 = &http.Transport{
		DialContext:         p.appDial,
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	p.h2c = H2CTransport(p.appDial)
	p.rp = netx.NewReverseProxy(roundTripper{p}, errorHandler, o.Log)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	p.http = netx.NewServer(p, &protos, connContext, o.Log)
	return p
}

// H2CTransport returns a transport speaking prior-knowledge HTTP/2 over
// plain TCP (h2c), for gRPC to applications. Its health-check PINGs come
// only after h2.DefaultMinPingInterval without a frame, which no gRPC server
// counts as a strike (net/http pings on every SendPingTimeout of quiet,
// answered or not).
func H2CTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols:          &protos,
		DialContext:        dial,
		DisableCompression: true,
		IdleConnTimeout:    90 * time.Second,
		HTTP2:              &http.HTTP2Config{SendPingTimeout: h2.DefaultMinPingInterval + 10*time.Second, PingTimeout: 10 * time.Second},
	}
}

func errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	w.Header().Set("conduit-proxy-error", err.Error())
	if errors.Is(err, netx.ErrUnsent) && InfoFrom(r.Context()).PeerID != "" {
		// The application never saw it: a meshed client's proxy sends it
		// to another endpoint.
		w.Header().Set(netx.HeaderUnsent, "1")
	}
	w.WriteHeader(status)
}

// appDial connects to the application for the HTTP paths; its error names
// the inbound side, so that a client reading Conduit-Proxy-Error knows which
// proxy failed. The connection counts in the tcp_* metrics (see appConn).
func (p *Proxy) appDial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := p.dialApp(ctx, network, addr)
	if err != nil {
		return nil, netx.Unsent(fmt.Errorf("inbound: connect to the application at %s: %w", addr, err))
	}
	return newAppConn(c, p.o.Metrics), nil
}

// dialApp is every inbound path's connect to the application at addr (the
// connection's target, 127.0.0.1:<original port>). An application that
// listens on IPv6 only ([::1], or a V6ONLY socket) refuses 127.0.0.1: when
// the proxy serves IPv6 (Options.IPv6), a connection 127.0.0.1 refuses is
// tried once more at [::1] on the same port. A connection made, or failing
// otherwise (a timeout, say), costs nothing more; an override Target is
// dialled as given.
func (p *Proxy) dialApp(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := p.dialer.DialContext(ctx, network, addr)
	if err == nil || !p.o.IPv6 || p.o.Target.IsValid() || !errors.Is(err, syscall.ECONNREFUSED) {
		return c, err
	}
	port, ok := strings.CutPrefix(addr, "127.0.0.1:")
	if !ok {
		return nil, err
	}
	c, err6 := p.dialer.DialContext(ctx, network, "[::1]:"+port)
	if err6 != nil {
		return nil, fmt.Errorf("%w; %w", err, err6)
	}
	return c, nil
}

type ctxKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if info := netx.InfoOf(c); info != nil {
		return context.WithValue(ctx, ctxKey{}, info)
	}
	return ctx
}

// InfoFrom returns the connection info of a request context.
func InfoFrom(ctx context.Context) *netx.Info {
	if i, ok := ctx.Value(ctxKey{}).(*netx.Info); ok {
		return i
	}
	return &netx.Info{}
}

// Serve accepts on l until it is closed.
func (p *Proxy) Serve(l net.Listener) error {
	cl := netx.NewChanListener(l.Addr())
	p.cl.Store(cl)
	go func() { _ = p.http.Serve(cl) }()
	if err := p.tracker.Serve(l, p.handle); err != nil {
		return fmt.Errorf("inbound: %w", err)
	}
	return nil
}

// Shutdown drains: net/http connections get GOAWAY / close when idle,
// opaque ones are waited for until ctx ends.
func (p *Proxy) Shutdown(ctx context.Context) error {
	var err error
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
	p.apps.Range(func(_, v any) bool {
		v.(*h1.Pool).CloseIdle(true)
		return true
	})
	p.apps2.Range(func(_, v any) bool {
		v.(*h2.Client).CloseIdle()
		return true
	})
	return err
}

func (p *Proxy) target(dst netip.AddrPort) string {
	if p.o.Target.IsValid() {
		return p.o.Target.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(dst.Port())))
}

// handle serves one accepted connection. It returns once the connection is
// owned by net/http or finished.
func (p *Proxy) handle(raw net.Conn) {
	info := &netx.Info{}
	dst, err := p.o.OrigDst.OriginalDst(raw)
	if err != nil && !p.o.Target.IsValid() {
		p.o.Log.Debug("no original destination; closing", "remote", raw.RemoteAddr(), "err", err)
		_ = raw.Close()
		return
	}
	if !p.o.Target.IsValid() && slices.Contains(p.o.OwnPorts, dst.Port()) {
		p.o.Log.Warn("refused a connection to the proxy's own port through the inbound listener (are the admin and tap ports skipped by the iptables rules?)",
			"remote", raw.RemoteAddr(), "port", dst.Port())
		_ = raw.Close()
		return
	}
	info.OrigDst = dst
	info.Target = p.target(dst) // once per connection, not per request
	c := netx.Wrap(raw, info)
	plain := metrics.TCPKey{Direction: "inbound", Peer: "src"}
	timeout := p.o.DetectTimeout
	opaque := ports.Contains(p.o.OpaquePort, dst.Port())
	if opaque {
		// Only look for a meshed client's ClientHello, briefly: server-speaks-first must not stall.
		timeout = min(timeout, 200*time.Millisecond)
	}
	proto, hello, err := netx.Peek(c, timeout)
	if err != nil {
		info.Open(p.o.Metrics, plain)
		_ = c.Close()
		info.Done()
		return
	}
	if opaque && proto != detect.TLS {
		proto = detect.Opaque
	}
	switch proto {
	case detect.TLS:
		if hello != nil && string(hello.SNI) == p.o.Identity.Name() {
			p.serveTLS(c, info)
			return
		}
		info.Open(p.o.Metrics, plain)
		p.opaque(c, info)
	case detect.HTTP1, detect.HTTP2:
		info.Open(p.o.Metrics, plain)
		if proto == detect.HTTP1 && !p.o.NoFastPath {
			p.serveFast(c, info, false)
			return
		}
		if proto == detect.HTTP2 && !p.o.NoH2FastPath {
			defer info.Done()
			p.serveH2(c, info)
			return
		}
		p.pushHTTP(c, info)
	default:
		info.Open(p.o.Metrics, plain)
		p.opaque(c, info)
	}
}

func (p *Proxy) pushHTTP(c net.Conn, info *netx.Info) {
	sc := &netx.Owned{Conn: c, Info: info}
	if err := p.cl.Load().Push(sc); err != nil {
		_ = sc.Close()
	}
}

func (p *Proxy) serveTLS(c *netx.Conn, info *netx.Info) {
	sc := &netx.Owned{Conn: c, Info: info}
	tc := tls.Server(sc, p.o.TLS)
	// A deadline on the connection, not a context: when a context ends,
	// crypto/tls closes the connection from a goroutine of its own, which
	// may still be closing it (and reading info) when the handshake has
	// returned and info.Open below writes it.
	_ = c.SetDeadline(time.Now().Add(p.o.DetectTimeout))
	err := handshake(tc)
	_ = c.SetDeadline(time.Time{})
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	if err != nil {
		p.o.Log.Debug("inbound TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
		if !timedOut { // a TLS error is a failure; the proxy's own deadline is not
			info.Note(err)
		}
		info.Open(p.o.Metrics, metrics.TCPKey{Direction: "inbound", Peer: "src", TLS: true})
		_ = sc.Close()
		return
	}
	cs := tc.ConnectionState()
	info.TLS = true
	info.PeerID = tlsconf.PeerID(&cs)
	if info.PeerID != "" {
		info.PeerIDHeader = []string{info.PeerID}
	}
	info.Open(p.o.Metrics, metrics.TCPKey{Direction: "inbound", Peer: "src", TLS: true, PeerID: info.PeerID})
	if cs.NegotiatedProtocol == tlsconf.ALPNOpaque {
		p.opaque(tc, info)
		return
	}
	if cs.NegotiatedProtocol != tlsconf.ALPNH2 && !p.o.NoFastPath {
		p.serveFast(tc, info, true)
		return
	}
	if cs.NegotiatedProtocol == tlsconf.ALPNH2 && !p.o.NoH2FastPath {
		p.serveH2(tc, info)
		return
	}
	// net/http switches to HTTP/2 on ALPN h2 only for a *tls.Conn; it
	// serves HTTP/1.1 on http/1.1 (with the fast path off).
	if err := p.cl.Load().Push(tc); err != nil {
		_ = tc.Close()
	}
}

// handshake runs tc's handshake on a goroutine that exits after it. The
// handshake (key exchange, certificate verification) grows its goroutine's
// stack, and the goroutine that serves the connection would keep that
// stack for the connection's life, idle ones included: the runtime shrinks
// a stack by half at most per GC, and only while less than a quarter of it
// is used (with the outbound's dialOpaque, 7-9 KiB less stack per idle
// opaque connection across both proxies; see TestIdleOpaqueMemory). It
// costs a goroutine per connection, nothing per read or write.
func handshake(tc *tls.Conn) error {
	done := make(chan error, 1)
	go func() { done <- tc.Handshake() }()
	return <-done
}

func (p *Proxy) opaque(c net.Conn, info *netx.Info) {
	defer info.Done()
	defer c.Close()
	target := info.Target
	out, err := p.dialApp(context.Background(), "tcp", target)
	if err != nil {
		p.o.Log.Debug("inbound opaque connect failed", "target", target, "err", err)
		// The client's connection failed: counted with the connect's
		// errno (ECONNREFUSED for an application that does not listen,
		// [::1] included), and ended with a reset, after the TLS handshake
		// for a meshed client. Without the mesh the client would have had
		// ECONNREFUSED from its connect; once the connection is accepted, a
		// reset is the closest signal. A close instead (close_notify, FIN)
		// would be a clean end to the client, and what a client's proxy
		// then counted would depend on timing: success when it had sent
		// nothing, ECONNRESET or EPIPE when its bytes met the closed
		// socket. A client's proxy reads the reset as ECONNRESET and resets
		// its application's connection in turn (netx.PipeAborting).
		info.Fail(err)
		netx.Abort(c)
		return
	}
	defer out.Close()
	stats := p.o.Metrics.Open(appKey)
	stats.CloseErr(netx.Pipe(c, out, stats))
}

// ServeHTTP forwards a request to the application.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, done := p.tracker.Switching(r)
	defer done()
	p.prepare(r)
	w, r, cancel := netx.Relay(w, r)
	defer cancel()
	p.rp.ServeHTTP(w, r)
}

// prepare addresses a served request to the application, with the peer's
// identity in conduit-client-id.
func (p *Proxy) prepare(r *http.Request) {
	info := InfoFrom(r.Context())
	SetClientID(r.Header, info)
	unannounce(r, HeaderClientID)
	r.RequestURI = ""
	r.URL.Scheme = "http"
	if info.Target != "" {
		r.URL.Host = info.Target
	} else {
		r.URL.Host = p.target(info.OrigDst)
	}
}

// serveH2 serves an HTTP/2 connection (mTLS with ALPN h2, or h2c) on the
// HTTP/2 fast path; it closes c.
func (p *Proxy) serveH2(c net.Conn, info *netx.Info) {
	if err := p.fast2.ServeConn(context.WithValue(context.Background(), ctxKey{}, info), c); err != nil {
		p.o.Log.Debug("inbound HTTP/2 connection failed", "remote", c.RemoteAddr(), "err", err)
	}
}

// h2Handler forwards a request of the HTTP/2 fast path (internal/h2) to
// the application, as ServeHTTP does for net/http; h2.Server writes the
// response back.
type h2Handler struct{ p *Proxy }

func (h h2Handler) RoundTrip(r *http.Request) (*http.Response, error) {
	h.p.prepare(r)
	resp, err := roundTripper(h).RoundTrip(r)
	if err != nil && errors.Is(err, netx.ErrUnsent) && InfoFrom(r.Context()).PeerID != "" {
		// The application never saw it (it is not listening: stopping,
		// say). A meshed client's proxy sends a refused stream to another
		// endpoint.
		return nil, fmt.Errorf("%w: %w", h2.ErrRefuse, err)
	}
	return resp, err
}

// SetClientID replaces any client-supplied conduit-client-id with the
// connection's authenticated peer identity (none for unauthenticated peers).
func SetClientID(h http.Header, info *netx.Info) {
	if info.PeerID == "" {
		delete(h, HeaderClientID)
		return
	}
	if len(info.PeerIDHeader) == 0 {
		info.PeerIDHeader = []string{info.PeerID}
	}
	h[HeaderClientID] = info.PeerIDHeader
}

// unannounce removes name from the trailer fields r announces: its
// Trailer header (net/http's servers move the names to r.Trailer, the
// HTTP/2 fast path keeps them in both) and r.Trailer's keys. A Trailer
// header left naming nothing is deleted. The trailer itself is dropped by
// the body's filter (trailerFilter): announced, it would have the
// application wait for, or merge, a field the proxy never delivers.
// Without a Trailer header, the common case, nothing is allocated.
func unannounce(r *http.Request, name string) {
	delete(r.Trailer, name)
	vs, ok := r.Header["Trailer"]
	if !ok || !slices.ContainsFunc(vs, func(v string) bool { return announces(v, name) }) {
		return
	}
	var kept []string
	for _, v := range vs {
		var names []string
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, name) {
				names = append(names, t)
			}
		}
		if len(names) > 0 {
			kept = append(kept, strings.Join(names, ", "))
		}
	}
	if len(kept) == 0 {
		delete(r.Header, "Trailer")
		return
	}
	r.Header["Trailer"] = kept
}

// announces reports whether the Trailer header value v names name.
func announces(v, name string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), name) {
			return true
		}
	}
	return false
}

// exchange is what an inbound request allocates: its response body's
// metrics and, for a request with a body, the body's trailer filter.
type exchange struct {
	resp metrics.Body
	req  trailerFilter
}

// trailerFilter wraps a request body: once the body ends, its trailers
// (filled in by the server at EOF) lose conduit-client-id. A client may
// send the field as a trailer (a chunked HTTP/1.1 trailer, or HTTP/2
// trailing HEADERS); sent on to the application, which may merge trailers
// into headers, it would stand for an authenticated identity. The
// transports read r.Trailer only after the body's EOF, in the goroutine
// that read it.
type trailerFilter struct {
	io.ReadCloser
	r *http.Request
}

// strip makes b r's body filter; it drops an announced conduit-client-id
// at once (HTTP/2 announces it in the head).
func (b *trailerFilter) strip(r *http.Request) {
	delete(r.Trailer, HeaderClientID)
	b.ReadCloser, b.r = r.Body, r
	r.Body = b
}

func (b *trailerFilter) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		delete(b.r.Trailer, HeaderClientID)
	}
	return n, err
}

// WouldBlock passes h2.BufferedBody through, so that the HTTP/2 client
// still sends what is there in one write.
func (b *trailerFilter) WouldBlock() bool {
	if bb, ok := b.ReadCloser.(h2.BufferedBody); ok {
		return bb.WouldBlock()
	}
	return true
}

type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	p := rt.p
	info := InfoFrom(r.Context())
	toH1 := r.ProtoMajor == 1
	if v, ok := r.Header[HeaderOrigProto]; ok {
		toH1 = len(v) > 0 && v[0] == "HTTP/1.1"
		delete(r.Header, HeaderOrigProto)
	}
	// The response's metrics body, and the request body's wrapper that
	// drops a trailing conduit-client-id, are one allocation.
	var x *exchange
	if r.Body != nil && r.Body != http.NoBody {
		x = new(exchange)
		x.req.strip(r)
	}
	key := metrics.RequestKey{Direction: "inbound", Authority: r.Host, TLS: info.TLS, PeerID: info.PeerID}
	p.o.Metrics.Request(key)
	var tp *tap.Tap
	if p.o.Tap.Observing() {
		tp = p.o.Tap.Start(tapRequest(r, info))
	}
	start := time.Now()
	var resp *http.Response
	var err error
	switch {
	case !toH1 && p.o.NoH2FastPath:
		netx.NoDefaultUserAgent(r)
		resp, err = p.h2c.RoundTrip(r)
	case !toH1:
		resp, err = p.appH2(r.URL.Host).RoundTrip(r)
	case p.o.NoFastPath:
		resp, err = p.viaTransport(r)
	default:
		// Pooled HTTP/1.1 in this goroutine (http.Transport adds two); the
		// head and a body up to 16 KiB leave in one write. Upgrades and
		// Expect: 100-continue go through http.Transport.
		if resp, err = p.appPool(r.URL.Host).RoundTrip(r); errors.Is(err, h1.ErrUnsupported) {
			resp, err = p.viaTransport(r)
		}
	}
	if err != nil {
		p.o.Metrics.Response(key, 0, true, time.Since(start))
		tp.Fail(err)
		return nil, err
	}
	// Only this proxy says what it did not send: the application's
	// netx.HeaderUnsent goes (h1's parser has dropped it already).
	delete(resp.Header, netx.HeaderUnsent)
	if x == nil {
		x = new(exchange)
	}
	body := &x.resp
	body.ReadCloser, body.Reg, body.Key, body.Start, body.Resp = resp.Body, p.o.Metrics, key, start, resp
	if tp != nil {
		tp.Response(resp.StatusCode)
		body.OnEnd = tp
	}
	resp.Body = body
	return resp, nil
}

// viaTransport sends an HTTP/1 request to the application through
// http.Transport, a small body buffered so that it leaves with the head.
func (p *Proxy) viaTransport(r *http.Request) (*http.Response, error) {
	if err := netx.BufferSmallBody(r); err != nil {
		return nil, err
	}
	netx.NoDefaultUserAgent(r)
	return p.h1.RoundTrip(r)
}

// tapRequest describes an inbound request to tap: the source is the
// client's address, the destination the original destination.
func tapRequest(r *http.Request, info *netx.Info) tap.Request {
	tr := tap.Request{Direction: tapv1.Direction_INBOUND, Source: r.RemoteAddr, TLS: info.TLS, ClientID: info.PeerID,
		Method: r.Method, Scheme: "http", Authority: r.Host, Path: r.URL.Path}
	if info.OrigDst.IsValid() {
		tr.Destination = info.OrigDst.String()
	}
	return tr
}
