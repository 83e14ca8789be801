package netx

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/conduit-mesh/conduit/proxy/detect"
	"github.com/conduit-mesh/conduit/proxy/metrics"
)

// Info describes an accepted connection; it travels in the request context.
type Info struct {
	OrigDst netip.AddrPort
	TLS     bool
	PeerID  string
	// PeerIDHeader is []string{PeerID}, built once per connection.
	PeerIDHeader []string
	Stats        metrics.TCP
	once         sync.Once
	// Bytes moved before Open (detection, TLS handshake).
	pendingR, pendingW int
}

// Done closes the connection's stats once.
func (i *Info) Done() { i.once.Do(i.Stats.Close) }

// Open starts the connection's stats under k once its labels (TLS, peer)
// are known; bytes moved before are added to it.
func (i *Info) Open(reg *metrics.Registry, k metrics.TCPKey) {
	i.Stats = reg.Open(k)
	i.Stats.Read(i.pendingR)
	i.Stats.Write(i.pendingW)
	i.pendingR, i.pendingW = 0, 0
}

func (i *Info) addRead(n int) {
	if i.Stats.Valid() {
		i.Stats.Read(n)
	} else if n > 0 {
		i.pendingR += n
	}
}

func (i *Info) addWrite(n int) {
	if i.Stats.Valid() {
		i.Stats.Write(n)
	} else if n > 0 {
		i.pendingW += n
	}
}

// Owned is a connection handed to net/http: closing it closes its stats.
type Owned struct {
	net.Conn
	Info *Info
}

// Close closes the connection and its stats.
func (o *Owned) Close() error {
	o.Info.Done()
	return o.Conn.Close()
}

// NetConn returns the wrapped connection.
func (o *Owned) NetConn() net.Conn { return o.Conn }

// InfoOf finds the Info of a connection, unwrapping TLS and Owned wrappers.
func InfoOf(c net.Conn) *Info {
	for i := 0; i < 4; i++ {
		switch v := c.(type) {
		case *Owned:
			return v.Info
		case *Conn:
			return v.Info
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// Conn is an accepted connection whose first bytes were peeked.
type Conn struct {
	net.Conn
	pre  []byte
	Info *Info
}

// Read returns the peeked bytes first.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre) // counted when peeked
		c.pre = c.pre[n:]
		return n, nil
	}
	n, err := c.Conn.Read(p)
	c.Info.addRead(n)
	return n, err
}

// Write counts bytes.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.Info.addWrite(n)
	return n, err
}

// Peeked returns the bytes not yet consumed from the peek buffer.
func (c *Conn) Peeked() []byte { return c.pre }

// Wrap returns c as a Conn without peeking.
func Wrap(c net.Conn, info *Info) *Conn { return &Conn{Conn: c, Info: info} }

const peekSize = 16384 + 5 + 64

var peekPool = sync.Pool{New: func() any { b := make([]byte, peekSize); return &b }}

// Peek reads the first bytes of c until detection decides, the buffer is
// full, or timeout passes (silence means a server-speaks-first protocol:
// Opaque). For TLS it reads the whole ClientHello record and parses it.
func Peek(c *Conn, timeout time.Duration) (detect.Protocol, *detect.ClientHello, error) {
	bp := peekPool.Get().(*[]byte)
	buf := *bp
	defer peekPool.Put(bp)
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.Conn.SetReadDeadline(time.Time{}) }()
	n := 0
	proto := detect.NeedMore
	var hello *detect.ClientHello
	limit := detect.MaxPeek
	for {
		m, err := c.Conn.Read(buf[n:limit])
		n += m
		c.Info.addRead(m)
		if n > 0 {
			proto = detect.Detect(buf[:n])
			if proto == detect.TLS {
				h, ok, need := detect.ParseClientHello(buf[:n])
				switch {
				case ok:
					hello = &h
				case need > n && need <= len(buf):
					limit = need
					if err == nil {
						continue
					}
					proto = detect.Opaque
				default:
					proto = detect.Opaque
				}
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if proto == detect.NeedMore || proto == detect.TLS && hello == nil {
					proto = detect.Opaque
				}
				break
			}
			if n == 0 {
				return detect.Opaque, nil, err
			}
			if proto == detect.NeedMore {
				proto = detect.Opaque
			}
			break
		}
		if proto != detect.NeedMore || n == limit {
			if proto == detect.NeedMore {
				proto = detect.Opaque
			}
			break
		}
	}
	c.pre = append([]byte(nil), buf[:n]...)
	if hello != nil {
		// Re-parse against the retained copy so the slices outlive the pooled buffer.
		h, _, _ := detect.ParseClientHello(c.pre)
		hello = &h
	}
	return proto, hello, nil
}

// ChanListener is a net.Listener fed by Push.
type ChanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

// NewChanListener returns a listener reporting addr.
func NewChanListener(addr net.Addr) *ChanListener {
	return &ChanListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

// Accept implements net.Listener.
func (l *ChanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Push hands c to the server; it fails once the listener is closed.
func (l *ChanListener) Push(c net.Conn) error {
	select {
	case l.ch <- c:
		return nil
	case <-l.done:
		return net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *ChanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *ChanListener) Addr() net.Addr { return l.addr }

// Tracker counts connections that net/http does not own (opaque, detecting)
// so that shutdown can wait for them and then close them.
type Tracker struct {
	mu    sync.Mutex
	conns map[io.Closer]struct{}
	wg    sync.WaitGroup
}

// Add tracks c; call the returned func when done.
func (t *Tracker) Add(c io.Closer) func() {
	t.mu.Lock()
	if t.conns == nil {
		t.conns = map[io.Closer]struct{}{}
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
		t.wg.Done()
	}
}

// Wait waits for every tracked connection until ctx ends, then closes the rest.
func (t *Tracker) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		for c := range t.conns {
			_ = c.Close()
		}
		t.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// BufferPool lends 32 KiB buffers to httputil.ReverseProxy, which otherwise
// allocates one per response.
type BufferPool struct{}

// Get implements httputil.BufferPool.
func (BufferPool) Get() []byte { return *(bufPool.Get().(*[]byte)) }

// Put implements httputil.BufferPool.
func (BufferPool) Put(b []byte) {
	if cap(b) >= 32*1024 {
		b = b[:32*1024]
		bufPool.Put(&b)
	}
}

type closeWriter interface{ CloseWrite() error }

// Pipe copies both ways between a (accepted) and b (dialed) until both
// directions end. Plain TCP on both sides uses splice.
func Pipe(a, b net.Conn, bStats metrics.TCP) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n := copyHalf(b, a)
		bStats.Write(int(n))
	}()
	n := copyHalf(a, b)
	bStats.Read(int(n))
	wg.Wait()
}

func copyHalf(dst, src net.Conn) int64 {
	var n int64
	if c, ok := src.(*Conn); ok && len(c.pre) > 0 {
		m, err := dst.Write(c.pre)
		n += int64(m)
		c.pre = nil
		if err != nil {
			_ = src.Close()
			return n
		}
	}
	// Unwrap to the raw sockets so io.Copy can splice; our wrapper's
	// counters are updated with the totals instead.
	rs, rd := unwrap(src), unwrap(dst)
	bp := bufPool.Get().(*[]byte)
	m, err := io.CopyBuffer(rd, rs, *bp)
	bufPool.Put(bp)
	n += m
	if c, ok := src.(*Conn); ok && rs != src {
		c.Info.addRead(int(m))
	}
	if c, ok := dst.(*Conn); ok && rd != dst {
		c.Info.addWrite(int(m))
	}
	if err != nil {
		_ = src.Close()
		_ = dst.Close()
		return n
	}
	if cw, ok := rd.(closeWriter); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
	return n
}

func unwrap(c net.Conn) net.Conn {
	if w, ok := c.(*Conn); ok && len(w.pre) == 0 {
		return w.Conn
	}
	return c
}
