package h1

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// bufSize is the size of the read and write buffers of every connection.
const bufSize = 16 << 10

// Pool keeps idle connections to one upstream, most recently used first.
type Pool struct {
	// Dial opens a new connection.
	Dial func(ctx context.Context) (net.Conn, error)
	// MaxIdle bounds the idle connections kept (default 64).
	MaxIdle int
	// IdleTimeout closes connections idle for longer (default 90 s).
	IdleTimeout time.Duration
	// Refused, when set, says the upstream is an authenticated peer proxy
	// whose netx.HeaderUnsent is believed. Such a response to a request
	// the server can send again (its body buffered) is not forwarded: the
	// error Refused makes of the response's Conduit-Proxy-Error, marked
	// netx.ErrUnsent, is offered to the call's Rerouter, as a failed
	// connection is.
	Refused func(reason string) error

	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

type upConn struct {
	c      net.Conn
	br     *bufio.Reader // nil while idle in the pool (see bufs.go)
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
	head   Head // response heads read by RoundTrip, reused
	// send is the state of a request body sent on its own goroutine while
	// the response is read (Pool.sendBody); nil otherwise.
	send *bodySend
}

func (p *Pool) idleTimeout() time.Duration {
	if p.IdleTimeout > 0 {
		return p.IdleTimeout
	}
	return 90 * time.Second
}

// take returns an idle connection younger than maxIdle, or nil; older ones
// are closed.
func (p *Pool) take(maxIdle time.Duration) *upConn {
	now := time.Now()
	var stale []*upConn
	p.mu.Lock()
	var u *upConn
	for len(p.idle) > 0 {
		last := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(last.idleAt) <= maxIdle {
			u = last
			break
		}
		stale = append(stale, last)
	}
	p.mu.Unlock()
	for _, s := range stale {
		_ = s.c.Close()
	}
	if u != nil {
		u.reused = true
		if u.br == nil {
			u.br, u.bw = getReader(u.c), getWriter(u.c)
		}
	}
	return u
}

// dial opens a new connection. Its error is marked netx.ErrUnsent.
func (p *Pool) dial(ctx context.Context) (*upConn, error) {
	c, err := p.Dial(ctx)
	if err != nil {
		return nil, netx.Unsent(err)
	}
	return &upConn{c: c, br: getReader(c), bw: getWriter(c)}, nil
}

// put returns a connection after a complete exchange; its buffers go back
// to their pools while it waits.
func (p *Pool) put(u *upConn) {
	if u.br.Buffered() > 0 {
		// Bytes past the response (a body on a HEAD, 204 or 304 response,
		// or longer than its Content-Length) would be read as the response
		// to the next request sent on it, another client's maybe.
		_ = u.c.Close()
		return
	}
	u.idleAt = time.Now()
	if putBuffers(u.br, u.bw) {
		u.br, u.bw = nil, nil
	}
	max := p.MaxIdle
	if max <= 0 {
		max = 64
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= max {
		p.mu.Unlock()
		_ = u.c.Close()
		return
	}
	// The oldest idle connection expires first: it is at the bottom.
	var expired *upConn
	if len(p.idle) > 0 && u.idleAt.Sub(p.idle[0].idleAt) > p.idleTimeout() {
		expired = p.idle[0]
		p.idle = append(p.idle[:0], p.idle[1:]...)
	}
	p.idle = append(p.idle, u)
	p.mu.Unlock()
	if expired != nil {
		_ = expired.c.Close()
	}
}

// Idle returns the number of idle connections.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// CloseIdle closes the idle connections; with stop, later ones too.
func (p *Pool) CloseIdle(stop bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if stop {
		p.closed = true
	}
	p.mu.Unlock()
	for _, u := range idle {
		_ = u.c.Close()
	}
}
