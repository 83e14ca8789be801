package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/proxy/balance"
	"github.com/conduit-mesh/conduit/proxy/internal/h1"
	"github.com/conduit-mesh/conduit/proxy/internal/h2"
	"github.com/conduit-mesh/conduit/proxy/internal/netx"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/profile"
	"github.com/conduit-mesh/conduit/proxy/tlsconf"
)

// serveFast serves an HTTP/1 connection on the fast path; requests it does
// not handle (tap, retries, timeouts, upgrades, ...) move the connection to
// net/http. To a meshed endpoint a request goes on its HTTP/2 connection,
// or with MeshedHTTP1 on pooled HTTP/1.1 mTLS connections.
func (p *Proxy) serveFast(c *netx.Conn, info *netx.Info) {
	handed := false
	p.fast.ServeConn(c, &fastConn{p: p, info: info}, func(hc net.Conn) {
		handed = true
		oc := &netx.Owned{Conn: hc, Info: info}
		if err := p.cl.Load().Push(oc); err != nil {
			_ = oc.Close()
		}
	})
	if !handed {
		info.Done()
	}
}

// serveH2 serves an HTTP/2 (h2c) connection from the application on the
// HTTP/2 fast path.
func (p *Proxy) serveH2(c *netx.Conn, info *netx.Info) {
	defer info.Done()
	if err := p.fast2.ServeConn(context.WithValue(context.Background(), connKey{}, info), c); err != nil {
		p.o.Log.Debug("outbound HTTP/2 connection failed", "remote", c.RemoteAddr(), "err", err)
	}
}

// h2Handler routes a request of the HTTP/2 fast path as ServeHTTP does,
// without httputil.ReverseProxy: h2.Server writes the response back.
type h2Handler struct{ p *Proxy }

func (h h2Handler) RoundTrip(r *http.Request) (*http.Response, error) {
	// The call goes to roundTrip as it is, not in a context of r's: the
	// h2 client then finds the stream's own context, which it needs no
	// context.AfterFunc to follow (see netx.AbortCtx).
	cl := &call{}
	if err := h.p.routeInto(r, cl); err != nil {
		return errorResponse(err), nil
	}
	resp, err := roundTripper(h).roundTrip(r, cl)
	if err != nil {
		if errors.Is(err, h2.ErrRefused) && !errors.Is(err, netx.ErrUnsent) {
			// The endpoint refused it unprocessed, and its body (of unknown
			// length, as gRPC's) was not kept to send it elsewhere: refuse
			// it in turn, for the application's client to send it again
			// (gRPC does, transparently), and the balancer to avoid that
			// endpoint then.
			return nil, fmt.Errorf("%w: %w", h2.ErrRefuse, err)
		}
		return errorResponse(err), nil
	}
	return resp, nil
}

// errorResponse answers err as errorHandler does.
func errorResponse(err error) *http.Response {
	return &http.Response{StatusCode: errorStatus(err), Header: http.Header{"Conduit-Proxy-Error": {err.Error()}},
		Body: http.NoBody, ContentLength: 0}
}

// fastConn routes the requests of one fast-path connection; its fields are
// the state of the current request, reused.
type fastConn struct {
	p        *Proxy
	info     *netx.Info
	cl       call
	ep       *balance.Endpoint
	key      metrics.RequestKey
	start    time.Time
	t0       int64
	epDone   bool
	failure  bool
	ended    bool         // the current attempt was counted
	reroutes int          // attempts sent elsewhere after a failed connection
	match    http.Request // for route matching, when the profile has routes
	// The last Host routed and Normalize's answer for it: a connection's
	// requests mostly go to one host, and a short name's normalized form
	// is a string built per call.
	host, name string
	isSvc      bool
}

// Route implements h1.Router.
func (f *fastConn) Route(h *h1.Head) (h1.Call, bool) {
	p := f.p
	if p.o.Tap.Observing() {
		return h1.Call{}, false
	}
	h.Drop(HeaderOrigProto)
	f.cl = call{}
	if host := h.Host(); host != f.host {
		// A copy: host is a slice of the whole head.
		f.host = strings.Clone(host)
		f.name, f.isSvc = Normalize(f.host, p.o.Namespace, p.o.ClusterDomain)
	}
	prof, err := p.routeNamed(context.Background(), &f.cl, f.host, f.name, f.isSvc, f.info)
	if err != nil {
		status := http.StatusBadGateway
		var se statusError
		if errors.As(err, &se) {
			status = int(se)
		}
		return h1.Call{Status: status, Err: err}, true
	}
	if prof != nil && len(prof.Routes) > 0 {
		u, err := url.ParseRequestURI(h.Target())
		if err != nil {
			return h1.Call{}, false
		}
		f.match.Method, f.match.URL = h.Method(), u
		f.cl.route = prof.Match(&f.match)
		if rt := f.cl.route; rt != nil && (rt.Retryable || rt.Timeout > 0) {
			return h1.Call{}, false
		}
	}
	ep := f.cl.fixed
	if ep == nil {
		ep = p.p2c.Pick(f.cl.eps)
	}
	if f.cl.budget != nil {
		f.cl.budget.Deposit()
	}
	f.reroutes = 0
	return f.attempt(ep), true
}

// attempt starts sending the current request to ep.
func (f *fastConn) attempt(ep *balance.Endpoint) h1.Call {
	p := f.p
	u := ep.Value.(*upstream)
	routeName := ""
	if f.cl.route != nil {
		routeName = f.cl.route.Name
	}
	f.key = metrics.RequestKey{Direction: "outbound", Authority: f.cl.authority, Route: routeName,
		TLS: u.addr.Identity != "", PeerID: u.addr.Identity, PeerLabels: u.addr.Labels}
	p.o.Metrics.Request(f.key)
	f.ep, f.epDone, f.failure, f.ended = ep, false, false, false
	f.start = time.Now()
	f.t0 = ep.Start()
	if u.viaH2 != nil && !p.o.MeshedHTTP1 {
		// To a meshed endpoint, HTTP/1 rides its HTTP/2 connection.
		return h1.Call{RoundTrip: u.viaH2, Obs: f}
	}
	return h1.Call{Pool: u.fastPool(p), Obs: f}
}

// Reroute implements h1.Rerouter: a request whose endpoint could not be
// reached goes to another endpoint of the Service, maxReroutes times at
// most. The failed attempt counts as a failed response.
func (f *fastConn) Reroute(err error) (h1.Call, bool) {
	// The failed attempt ends here either way (the server's Done after a
	// decline is then a no-op), and its endpoint is now Failing.
	f.Done(0, err)
	ep := f.p.reroute(&f.cl, f.ep, f.reroutes)
	if ep == nil {
		return h1.Call{}, false
	}
	f.reroutes++
	return f.attempt(ep), true
}

// ResponseHead implements h1.Observer.
func (f *fastConn) ResponseHead(resp h1.Response) {
	f.ep.Done(f.t0, balance.DefaultDecay)
	f.epDone = true
	f.failure = profile.IsFailure(f.cl.route, resp.Code())
	if gs := resp.Get("Grpc-Status"); gs != "" && gs != "0" {
		f.failure = true
	}
}

// Done implements h1.Observer. After Reroute declined, it is called for
// an attempt already ended: nothing is counted twice.
func (f *fastConn) Done(status int, err error) {
	if f.ended {
		return
	}
	f.ended = true
	if !f.epDone {
		endAttempt(f.ep, f.t0, err)
	}
	f.p.o.Metrics.Response(f.key, status, f.failure || err != nil || status == 0, time.Since(f.start))
}

// fastPool returns the endpoint's HTTP/1.1 connection pool: mTLS with ALPN
// http/1.1 to a meshed endpoint, plain TCP otherwise.
func (u *upstream) fastPool(p *Proxy) *h1.Pool {
	u.fastOnce.Do(func() {
		u.fast = &h1.Pool{Dial: func(ctx context.Context) (net.Conn, error) {
			c, _, err := p.dial(ctx, u.addr, tlsconf.ALPNHTTP1)
			return c, err
		}}
		if u.addr.Identity != "" {
			// A meshed endpoint's proxy says when it refused a request
			// unprocessed (and mTLS proves it is that proxy).
			u.fast.Refused = u.refusedBy
		}
	})
	return u.fast
}
