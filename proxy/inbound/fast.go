package inbound

import (
	"context"
	"net"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/h1"
	"github.com/conduit-mesh/conduit/proxy/internal/h2"
	"github.com/conduit-mesh/conduit/proxy/internal/netx"
	"github.com/conduit-mesh/conduit/proxy/metrics"
)

// serveFast serves an HTTP/1 connection (plain, or mTLS with ALPN
// http/1.1) on the fast path; requests it does not handle (tap, upgrades,
// ...) move the connection to net/http.
func (p *Proxy) serveFast(c net.Conn, info *netx.Info, owned bool) {
	handed := false
	p.fast.ServeConn(c, &fastConn{p: p, info: info}, func(hc net.Conn) {
		handed = true
		if !owned {
			hc = &netx.Owned{Conn: hc, Info: info}
		}
		if err := p.cl.Load().Push(hc); err != nil {
			_ = hc.Close()
		}
	})
	if !handed {
		info.Done()
	}
}

// fastConn routes the requests of one fast-path connection to the
// application.
type fastConn struct {
	p     *Proxy
	info  *netx.Info
	key   metrics.RequestKey
	start time.Time
	fail  bool
}

// Route implements h1.Router.
func (f *fastConn) Route(h *h1.Head) (h1.Call, bool) {
	p := f.p
	if p.o.Tap.Observing() {
		return h1.Call{}, false
	}
	h.Drop(HeaderOrigProto)
	h.Drop(HeaderClientID)
	// A chunked body may end with trailer fields: a conduit-client-id
	// among them would reach the application, which may merge trailers
	// into headers, as an authenticated identity.
	h.DropTrailer(HeaderClientID)
	if f.info.PeerID != "" {
		h.Add(HeaderClientID, f.info.PeerID)
	}
	f.key = metrics.RequestKey{Direction: "inbound", Authority: h.Host(), TLS: f.info.TLS, PeerID: f.info.PeerID}
	p.o.Metrics.Request(f.key)
	f.start, f.fail = time.Now(), false
	return h1.Call{Pool: p.appPool(f.info.Target), Obs: f, MarkUnsent: f.info.PeerID != ""}, true
}

// ResponseHead implements h1.Observer.
func (f *fastConn) ResponseHead(resp h1.Response) {
	f.fail = resp.Code() >= 500
	if gs := resp.Get("Grpc-Status"); gs != "" && gs != "0" {
		f.fail = true
	}
}

// Done implements h1.Observer.
func (f *fastConn) Done(status int, err error) {
	f.p.o.Metrics.Response(f.key, status, f.fail || err != nil || status == 0, time.Since(f.start))
}

// appPool returns the pool of HTTP/1.1 connections to the application at target.
func (p *Proxy) appPool(target string) *h1.Pool {
	if v, ok := p.apps.Load(target); ok {
		return v.(*h1.Pool)
	}
	pool := &h1.Pool{Dial: func(ctx context.Context) (net.Conn, error) {
		return p.appDial(ctx, "tcp", target)
	}}
	v, _ := p.apps.LoadOrStore(target, pool)
	return v.(*h1.Pool)
}

// appH2 returns the HTTP/2 (h2c) client to the application at target.
func (p *Proxy) appH2(target string) *h2.Client {
	if v, ok := p.apps2.Load(target); ok {
		return v.(*h2.Client)
	}
	c := &h2.Client{Dial: func(ctx context.Context) (net.Conn, error) {
		return p.appDial(ctx, "tcp", target)
	}, DialTimeout: 2 * p.o.ConnectTimeout, IdleTimeout: 90 * time.Second}
	v, _ := p.apps2.LoadOrStore(target, c)
	return v.(*h2.Client)
}
