package netx

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
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
	// Target is the inbound application address, built once per connection.
	Target string
	Stats  metrics.TCP
	once   sync.Once
	// class is the metrics.CloseClass of the connection's first failure
	// (see Note): how Done counts its end.
	class atomic.Uint32
	// pipe is pipeRunning while a Pipe copies the connection, with
	// pipeClosed once its Owned was closed meanwhile: that close does not
	// count the connection's end, the end of the Pipe does. One copy
	// closes both sides as soon as it fails, while the other may not have
	// noted its own error yet (the reset that replaces the failed write's
	// EPIPE, see Note).
	pipe atomic.Uint32
	// Bytes moved before Open (detection, TLS handshake).
	pendingR, pendingW int
	// lookupUntil is the deadline (Unix ns) of a discovery wait begun for
	// the connection before its first request, which that request keeps
	// (see SetLookupDeadline); 0 when none.
	lookupUntil atomic.Int64
}

// SetLookupDeadline notes that the proxy waited in vain, until t, for the
// destination service's answer about the connection: its first request's
// waits end at t too, rather than at a deadline of their own.
func (i *Info) SetLookupDeadline(t time.Time) { i.lookupUntil.Store(t.UnixNano()) }

// TakeLookupDeadline returns the deadline SetLookupDeadline noted, once
// (the zero time after that, or without one).
func (i *Info) TakeLookupDeadline() time.Time {
	if i.lookupUntil.Load() == 0 {
		return time.Time{}
	}
	if ns := i.lookupUntil.Swap(0); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Done closes the connection's stats once, classified by the first
// failure noted (success when none). Before Open it does nothing: a TLS
// handshake that times out closes the connection before its stats open.
func (i *Info) Done() {
	if i.Stats.Valid() {
		i.once.Do(i.closeStats)
	}
}

func (i *Info) closeStats() { i.Stats.CloseAs(metrics.CloseClass(i.class.Load())) }

// Note records err, returned by a read or write of the connection (or its
// TLS handshake): the first one that is a failure (metrics.Classify: not
// the end of the stream, the proxy's own close or deadline) decides how
// Done counts the connection. Conn notes the errors of its reads and
// writes, and Pipe those of the copies that bypass it; only an error
// costs anything.
//
// One exception to the first failure: ECONNRESET replaces an EPIPE noted
// before it. A socket that a reset closed while established reports
// ECONNRESET once, to whichever call comes first, and EPIPE to the writes
// after it; when the two directions' copies race for it, the write that
// lost may be noted first, and the connection would be counted by the echo
// instead of the reset. Pipe keeps the connection's count open until both
// copies have noted theirs (Info.pipe). (A reset after the peer's FIN
// reports EPIPE to both, never ECONNRESET.)
func (i *Info) Note(err error) {
	if err == nil {
		return
	}
	if cl := metrics.Classify(err); cl != metrics.Success {
		i.note(cl)
	}
}

// Fail notes err, which ended the connection's purpose (the inbound
// proxy's connect to the application, for an opaque connection): a
// failure even when Classify calls err none (a connect timeout).
func (i *Info) Fail(err error) {
	cl := metrics.Classify(err)
	if cl == metrics.Success {
		cl = metrics.Failure
	}
	i.note(cl)
}

var (
	resetClass = uint32(metrics.Classify(syscall.ECONNRESET))
	pipeClass  = uint32(metrics.Classify(syscall.EPIPE))
)

func (i *Info) note(cl metrics.CloseClass) {
	if !i.class.CompareAndSwap(uint32(metrics.Success), uint32(cl)) && uint32(cl) == resetClass {
		i.class.CompareAndSwap(pipeClass, resetClass)
	}
}

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
	o.Info.ownedClosed()
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

// Conn is an accepted connection whose first bytes were peeked, or a dialed
// one; it counts the bytes moved and notes the errors (Info.Note).
type Conn struct {
	net.Conn
	pre  []byte
	Info *Info
	// ck, once set (by copyBuffered under TLS), lets writes be batched.
	ck atomic.Pointer[corker]
	// eof: a read returned io.EOF, the peer's FIN (see endedUnclean).
	eof atomic.Bool
}

// Read returns the peeked bytes first.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre) // counted when peeked
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil // the copy is not kept for the connection's life
		}
		return n, nil
	}
	n, err := c.Conn.Read(p)
	c.Info.addRead(n)
	if err != nil {
		if err == io.EOF {
			c.eof.Store(true)
		}
		c.Info.Note(err)
	}
	return n, err
}

// Write counts bytes. While corked, bytes are kept until flush.
func (c *Conn) Write(p []byte) (int, error) {
	if k := c.ck.Load(); k != nil {
		return k.write(p)
	}
	n, err := c.Conn.Write(p)
	c.Info.addWrite(n)
	if err != nil {
		c.Info.Note(err)
	}
	return n, err
}

// CloseWrite half-closes the connection when the one it wraps can (TCP):
// HTTP/2 sends its last GOAWAY, then a FIN, and reads on until the peer
// closes (proxy/internal/h2). ErrUnsupported otherwise.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// corker batches the writes of a Conn: TLS writes one record per
// underlying Write, so a 64 KiB chunk would take four system calls.
// Writes from other goroutines (TLS alerts, key updates) take the same lock,
// so nothing is reordered.
type corker struct {
	c     *Conn
	mu    sync.Mutex
	on    bool
	buf   []byte
	spare *[]byte // pooled backing of buf
}

// corkOf returns the corker of the Conn under w (TLS over Owned over Conn),
// nil when w is not TLS over a Conn.
func corkOf(w io.Writer) *corker {
	nc, ok := w.(interface{ NetConn() net.Conn })
	if !ok {
		return nil
	}
	if _, isTLS := w.(*tls.Conn); !isTLS {
		return nil
	}
	under := nc.NetConn()
	if o, ok := under.(*Owned); ok {
		under = o.Conn
	}
	c, ok := under.(*Conn)
	if !ok {
		return nil
	}
	if k := c.ck.Load(); k != nil {
		return k
	}
	k := &corker{c: c}
	if !c.ck.CompareAndSwap(nil, k) {
		return c.ck.Load()
	}
	return k
}

func (k *corker) write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.on {
		if k.buf == nil {
			k.spare = corkBufs.Get().(*[]byte)
			k.buf = (*k.spare)[:0]
		}
		k.buf = append(k.buf, p...)
		return len(p), nil
	}
	n, err := k.c.Conn.Write(p)
	k.c.Info.addWrite(n)
	if err != nil {
		k.c.Info.Note(err)
	}
	return n, err
}

func (k *corker) cork() {
	k.mu.Lock()
	k.on = true
	k.mu.Unlock()
}

// flush writes what was batched, uncorks, and returns the buffer to the
// pool: an idle connection holds none.
func (k *corker) flush() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.on = false
	if len(k.buf) == 0 {
		return nil
	}
	n, err := k.c.Conn.Write(k.buf)
	k.c.Info.addWrite(n)
	if err != nil {
		k.c.Info.Note(err)
	}
	if cap(k.buf) == corkBufSize {
		*k.spare = k.buf[:corkBufSize]
		corkBufs.Put(k.spare)
	}
	k.spare, k.buf = nil, nil
	return err
}

// Peeked returns the bytes not yet consumed from the peek buffer.
func (c *Conn) Peeked() []byte { return c.pre }

// Wrap returns c as a Conn without peeking.
func Wrap(c net.Conn, info *Info) *Conn { return &Conn{Conn: NewSysConn(c), Info: info} }

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
		c.Info.Note(err)
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

// Tracker counts connections that net/http does not own (opaque, detecting,
// and those net/http let go of when a request switched protocols) so that
// shutdown can wait for them and then close them. Add may be called at any
// time, during a Wait too.
type Tracker struct {
	mu      sync.Mutex
	conns   map[io.Closer]struct{}
	empty   chan struct{} // closed when conns empties, made by Wait
	closing bool          // Wait's time is up: what is added now is closed at once
}

// Add tracks c; call the returned func when done.
func (t *Tracker) Add(c io.Closer) func() {
	t.mu.Lock()
	if t.conns == nil {
		t.conns = map[io.Closer]struct{}{}
	}
	t.conns[c] = struct{}{}
	closing := t.closing
	t.mu.Unlock()
	if closing {
		_ = c.Close()
	}
	return func() {
		t.mu.Lock()
		delete(t.conns, c)
		if len(t.conns) == 0 && t.empty != nil {
			close(t.empty)
			t.empty = nil
		}
		t.mu.Unlock()
	}
}

// Serve accepts on l until it is closed (then it returns nil), and handles
// each connection in a goroutine of its own, tracked until handle returns.
// An accept error that is a timeout (out of file descriptors, say) is
// retried after 10 ms; any other ends the loop.
func (t *Tracker) Serve(l net.Listener, handle func(net.Conn)) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		done := t.Add(c)
		go func() {
			defer done()
			handle(c)
		}()
	}
}

// Switching tracks a request that asks to switch protocols (Upgrade, as
// WebSockets do) until the returned func is called. net/http forgets a
// connection once its handler hijacks it, so its Shutdown would not wait
// for the switched connection, and the proxy would exit under it. The
// request returned carries a context that Wait cancels when its time is
// up; httputil.ReverseProxy then closes both sides.
func (t *Tracker) Switching(r *http.Request) (*http.Request, func()) {
	if r.Header.Get("Upgrade") == "" {
		return r, func() {}
	}
	ctx, cancel := context.WithCancel(r.Context())
	done := t.Add(&canceler{cancel})
	return r.WithContext(ctx), func() { done(); cancel() }
}

// canceler closes by cancelling a context (a pointer, to be a map key).
type canceler struct{ cancel context.CancelFunc }

func (c *canceler) Close() error { c.cancel(); return nil }

// Wait waits for every tracked connection until ctx ends, then closes the
// rest and waits for them to be done.
func (t *Tracker) Wait(ctx context.Context) error {
	t.mu.Lock()
	if len(t.conns) == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.empty == nil {
		t.empty = make(chan struct{})
	}
	empty := t.empty
	t.mu.Unlock()
	select {
	case <-empty:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	t.closing = true
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	<-empty
	return ctx.Err()
}

// httpBufSize is the size of the buffers lent to httputil.ReverseProxy.
const httpBufSize = 32 << 10

// pipeBufSize is the size of the opaque copy buffers: 64 KiB reads from a
// socket take a whole burst in one system call and, through TLS, yield
// four full 16 KiB records written at once (see Conn.cork).
const pipeBufSize = 64 << 10

// bigLent counts the 64 KiB copy buffers in use (for tests).
var bigLent atomic.Int64

// smallPipeBufSize is the size of the buffer an opaque copy from a reader
// that is neither a SysConn nor TLS reads into after a pause (see
// copyBuffered).
const smallPipeBufSize = 4 << 10

const corkBufSize = pipeBufSize + 4<<10

var (
	httpBufs = sync.Pool{New: func() any { b := make([]byte, httpBufSize); return &b }}
	pipeBufs = sync.Pool{New: func() any { b := make([]byte, pipeBufSize); return &b }}
	// corkBufs hold a 64 KiB chunk once encrypted: four records and their
	// overhead (plus the small records TLS starts with).
	corkBufs = sync.Pool{New: func() any { b := make([]byte, corkBufSize); return &b }}
	// holders are empty *[]byte boxes, so that BufferPool.Put does not
	// allocate a new box for every buffer returned.
	holders = sync.Pool{New: func() any { return new([]byte) }}
)

// BufferPool lends 32 KiB buffers to httputil.ReverseProxy, which otherwise
// allocates one per response. Get and Put do not allocate in steady state.
type BufferPool struct{}

// Get implements httputil.BufferPool.
func (BufferPool) Get() []byte {
	bp := httpBufs.Get().(*[]byte)
	b := *bp
	*bp = nil
	holders.Put(bp)
	return b
}

// Put implements httputil.BufferPool.
func (BufferPool) Put(b []byte) {
	if cap(b) < httpBufSize {
		return
	}
	bp := holders.Get().(*[]byte)
	*bp = b[:httpBufSize]
	httpBufs.Put(bp)
}

type closeWriter interface{ CloseWrite() error }

// Pipe copies both ways between a (accepted) and b (dialed) until both
// directions end. Plain TCP on both sides uses splice; otherwise (TLS on a
// side) the copy goes through a pooled 64 KiB buffer and each chunk is
// encrypted into one write.
//
// The copies' errors are told apart by side: a side's first failure is
// noted in its Info when it has one (InfoOf: a always, b when dialed as a
// Conn, whose Info then counts its bytes too), before the side is closed,
// and b's is returned (nil when b ended cleanly) for a caller that counts
// b with stats of its own, bStats: bStats.CloseErr(err). bStats must be the
// zero TCP when b's Info counts b. A side whose Owned is closed while Pipe
// runs (by the copies, or by anyone else) is counted when Pipe returns,
// once both copies have noted their errors; one closed after is counted by
// that close.
func Pipe(a, b net.Conn, bStats metrics.TCP) error { return pipe(a, b, bStats, false) }

// PipeAborting is Pipe for a b whose failure must reach a's peer as one:
// the outbound proxy's mTLS connection to a peer proxy. When b fails (a
// read or write of it returns a failure, see metrics.Classify), or its TLS
// stream ends without close_notify (its TCP connection ended under it: see
// endedUnclean), a is aborted with a reset (Abort) instead of being closed
// or half-closed, so that its peer reads ECONNRESET rather than the end of
// a stream that did not end. A peer proxy ends every stream it closes with
// close_notify, and resets the connection only when it cannot connect to
// its application (the inbound proxy's opaque path): the client
// application then learns that its connection failed, as it would have
// from a refused connect without the mesh. Clean ends of either side, and
// a's failures, are passed on as Pipe does. b's Info counts b.
func PipeAborting(a, b net.Conn) { _ = pipe(a, b, metrics.TCP{}, true) }

// Abort closes c's TCP connection with a reset (SO_LINGER 0) at once,
// bypassing its wrappers: a TLS connection sends no close_notify, which
// its peer would read as a clean end before the reset, and an Owned's
// Info is not closed (its owner does it, after noting why). Closing the
// wrappers afterwards only finds the connection closed.
func Abort(c net.Conn) {
	for range 8 {
		switch v := c.(type) {
		case *net.TCPConn:
			_ = v.SetLinger(0)
			_ = v.Close()
			return
		case *SysConn:
			c = v.TCPConn
		case *Conn:
			c = v.Conn
		case *Owned:
			c = v.Conn
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			_ = c.Close()
			return
		}
	}
	_ = c.Close()
}

// endedUnclean reports whether c, a TLS connection whose read returned
// io.EOF, ended without close_notify: crypto/tls reads the connection
// under it only while it needs more of a record, so that connection's
// EOF (the peer's FIN without close_notify, or a reset whose error the
// other direction's write took) means the stream was cut, while a
// close_notify returns io.EOF without reading it again.
func endedUnclean(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return false
	}
	w := connOf(tc.NetConn())
	return w != nil && w.eof.Load()
}

func pipe(a, b net.Conn, bStats metrics.TCP, abortA bool) error {
	ia, ib := InfoOf(a), InfoOf(b)
	ia.startPipe()
	ib.startPipe()
	defer func() {
		ia.endPipe()
		ib.endPipe()
	}()
	var wg sync.WaitGroup
	var bErrW error // b's error as the destination, set by the other goroutine
	wg.Add(1)
	go func() {
		defer wg.Done()
		var n int64
		n, _, bErrW = copyHalf(b, a, false, abortA)
		bStats.Write(int(n))
	}()
	n, bErr, _ := copyHalf(a, b, abortA, false)
	bStats.Read(int(n))
	wg.Wait()
	if failed(bErr) {
		return bErr
	}
	if failed(bErrW) {
		return bErrW
	}
	return nil
}

const (
	pipeRunning = 1 << iota
	pipeClosed
)

// startPipe and endPipe bracket a Pipe of the connection; i may be nil
// (a connection without an Info). endPipe counts the connection if it was
// closed meanwhile.
func (i *Info) startPipe() {
	if i != nil {
		i.pipe.Store(pipeRunning)
	}
}

func (i *Info) endPipe() {
	if i != nil && i.pipe.Swap(0)&pipeClosed != 0 {
		i.Done()
	}
}

// ownedClosed counts the connection's end for Owned.Close, unless a Pipe
// runs: then the Pipe's end does (it sees pipeClosed, whichever of the two
// comes first).
func (i *Info) ownedClosed() {
	if i.pipe.Or(pipeClosed)&pipeRunning == 0 {
		i.Done()
	}
}

// failed reports whether err is a connection's failure (metrics.Classify).
func failed(err error) bool { return err != nil && metrics.Classify(err) != metrics.Success }

// noteOn notes err in c's Info, if it has one.
func noteOn(c net.Conn, err error) {
	if err == nil {
		return
	}
	if info := InfoOf(c); info != nil {
		info.Note(err)
	}
}

// copyHalf copies src to dst until src ends, then half-closes dst (closes
// it when it cannot); an error is noted on its side (see Pipe) and closes
// both. With srcAborts, a failure or an unclean end (endedUnclean) of src
// aborts dst instead; with dstAborts, a failure of dst aborts src (see
// PipeAborting). It returns the bytes copied and the error, as src's
// (reading) or dst's (writing).
func copyHalf(dst, src net.Conn, srcAborts, dstAborts bool) (n int64, srcErr, dstErr error) {
	if c := connOf(src); c != nil && len(c.pre) > 0 {
		m, err := dst.Write(c.pre)
		n += int64(m)
		c.pre = nil
		if err != nil {
			noteOn(dst, err)
			if dstAborts && failed(err) {
				Abort(src)
			}
			_ = src.Close()
			return n, nil, err
		}
	}
	// Unwrap to the raw sockets so io.Copy can splice; our wrapper's
	// counters are updated with the totals instead, and its errors noted.
	rs, rd := unwrap(src), unwrapWriter(dst)
	var m int64
	if ts, td := tcpOf(rs), tcpOf(rd); ts != nil && td != nil {
		var err error
		m, err = io.Copy(td, ts) // splice(2)
		if failed(err) {
			s, d := spliceFailed(ts, td, err)
			if s {
				srcErr = err
			}
			if d {
				dstErr = err
			}
		} else if err != nil {
			srcErr = err // a clean end all the same (the proxy's own close)
		}
	} else {
		m, srcErr, dstErr = copyBuffered(rd, rs)
	}
	n += m
	if c := connOf(src); c != nil && rs != src {
		c.Info.addRead(int(m))
	}
	if c := connOf(dst); c != nil && rd != dst {
		c.Info.addWrite(int(m))
	}
	if srcErr != nil || dstErr != nil {
		noteOn(src, srcErr)
		noteOn(dst, dstErr)
		switch {
		case srcAborts && failed(srcErr):
			Abort(dst)
		case dstAborts && failed(dstErr):
			Abort(src)
		}
		_ = src.Close()
		_ = dst.Close()
		return n, srcErr, dstErr
	}
	if srcAborts && endedUnclean(src) {
		Abort(dst)
		_ = src.Close()
		return n, nil, nil
	}
	if cw, ok := rd.(closeWriter); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
	return n, nil, nil
}

// copyBuffered copies src to dst. A connection that waits holds no large
// buffer: a read that follows a short one (the peer had paused) waits for
// bytes without one when it can, and takes a pooled 64 KiB buffer (net's
// generic ReadFrom/WriteTo would allocate 32 KiB ones) only once they are
// there, kept until a read comes back short: from a SysConn (readPooled),
// once the socket is readable; from TLS, once a record is (the wait reads
// one byte, then the buffer takes it and the rest of what TLS holds, see
// drainTLS). Any other src is read into a 4 KiB buffer of the half's own
// after a pause, and moves to a pooled buffer when a read fills it. When
// dst is TLS over a Conn, the records of each chunk are sent in one write.
// It returns the bytes copied and the error that ended the copy, as src's
// or dst's (the end of src is none).
//
// The busy path (full reads into the 64 KiB buffer) is unchanged; a read
// after a pause costs a pool Get and Put, and from TLS one more Read of the
// bytes TLS already decrypted, against the system calls and the
// decryption every message costs.
func copyBuffered(dst io.Writer, src io.Reader) (n int64, srcErr, dstErr error) {
	var big *[]byte
	defer func() {
		if big != nil {
			pipeBufs.Put(big)
			bigLent.Add(-1)
		}
	}()
	take := func() []byte {
		big = pipeBufs.Get().(*[]byte)
		bigLent.Add(1)
		return *big
	}
	k := corkOf(dst)
	if k != nil {
		defer func() { _ = k.flush() }()
	}
	tc, _ := src.(*tls.Conn)
	sc, _ := src.(*SysConn)
	var small, one []byte // a reader that is neither: its pause buffer; TLS: its wait's byte
	switch {
	case tc != nil:
		one = make([]byte, 1)
	case sc == nil:
		small = make([]byte, smallPipeBufSize)
	}
	for {
		var buf []byte
		var nr int
		var rerr error
		switch {
		case big != nil:
			buf = *big
			nr, rerr = src.Read(buf)
			if tc != nil && rerr == nil && nr > 0 && nr < len(buf) {
				nr, rerr = drainTLS(tc, buf, nr)
			}
		case sc != nil:
			big, nr, rerr = sc.readPooled()
			if big != nil {
				buf = *big
			}
		case tc != nil:
			nr, rerr = tc.Read(one)
			if nr > 0 {
				buf = take()
				buf[0] = one[0]
				if rerr == nil {
					nr, rerr = drainTLS(tc, buf, nr)
				}
			}
		default:
			buf = small
			nr, rerr = src.Read(buf)
		}
		if nr > 0 {
			if k != nil {
				k.cork()
			}
			nw, werr := dst.Write(buf[:nr])
			if k != nil && werr == nil {
				werr = k.flush()
			}
			n += int64(nw)
			if werr != nil {
				return n, nil, werr
			}
			if nw != nr {
				return n, nil, io.ErrShortWrite
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return n, nil, nil
			}
			return n, rerr, nil
		}
		switch {
		case small != nil && big == nil && nr == len(small):
			take()
		case big != nil && nr < len(buf):
			pipeBufs.Put(big)
			bigLent.Add(-1)
			big = nil
		}
	}
}

// aLongTimeAgo is a read deadline that fails reads needing the socket at once.
var aLongTimeAgo = time.Unix(1, 0)

// drainTLS appends to buf[:n] the records tc already holds (a TLS Read
// returns one record, 16 KiB at most, while one socket read often brings
// several): reads that would need the socket fail at once on an expired
// deadline, which tls.Conn treats as temporary (net/http aborts reads on
// TLS connections the same way). The deadline is then cleared.
func drainTLS(tc *tls.Conn, buf []byte, n int) (int, error) {
	if tc.SetReadDeadline(aLongTimeAgo) != nil {
		return n, nil
	}
	var err error
	for n < len(buf) {
		var m int
		m, err = tc.Read(buf[n:])
		n += m
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil
			}
			break
		}
	}
	if derr := tc.SetReadDeadline(time.Time{}); derr != nil && err == nil {
		err = derr
	}
	return n, err
}

// connOf is c's Conn: c itself, or the Conn an Owned wraps (a dialed
// connection); nil if neither.
func connOf(c net.Conn) *Conn {
	switch v := c.(type) {
	case *Conn:
		return v
	case *Owned:
		w, _ := v.Conn.(*Conn)
		return w
	}
	return nil
}

// unwrapWriter is the raw connection to write to. Only reads care about
// the peeked bytes (pre), which the other direction's copy owns: a writer
// never looks at them.
func unwrapWriter(c net.Conn) net.Conn {
	if w := connOf(c); w != nil {
		return w.Conn
	}
	return c
}

// tcpOf is the *net.TCPConn of a raw connection, nil if it is not TCP.
func tcpOf(c net.Conn) *net.TCPConn {
	switch v := c.(type) {
	case *net.TCPConn:
		return v
	case *SysConn:
		return v.TCPConn
	}
	return nil
}

func unwrap(c net.Conn) net.Conn {
	if w := connOf(c); w != nil && len(w.pre) == 0 {
		return w.Conn
	}
	return c
}

// inMemoryBody is the type of io.NopCloser(*bytes.Reader), a body net/http
// already knows to be in memory (e.g. one buffered for retries).
var inMemoryBody = reflect.TypeOf(io.NopCloser(bytes.NewReader(nil)))

// InMemoryBody reports whether body is io.NopCloser(*bytes.Reader) (as
// BufferSmallBody leaves it): net/http writes it with the head, and closing
// it loses nothing.
func InMemoryBody(body io.ReadCloser) bool { return reflect.TypeOf(body) == inMemoryBody }

// SmallBody is the largest request body BufferSmallBody reads ahead.
const SmallBody = 16 << 10

// BufferSmallBody reads a request body of known length up to SmallBody
// bytes before the request is forwarded over HTTP/1.1: net/http writes the
// headers and an in-memory body in one write, while for any other body it
// flushes the headers first (one more system call and wake-up of the
// application per request). Requests that wait for the server before sending
// their body (Expect: 100-continue) and bodies of unknown length are left
// streaming.
func BufferSmallBody(r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength <= 0 || r.ContentLength > SmallBody {
		return nil
	}
	if _, ok := r.Header["Expect"]; ok || InMemoryBody(r.Body) {
		return nil
	}
	buf := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		return fmt.Errorf("proxy: read request body: %w", err)
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf))
	return nil
}

// MayBlock reports whether a Read of r may block: true unless r is
// http.NoBody or can tell it will not, with a WouldBlock method
// (h2.BufferedBody, h1's bodies, and metrics.Body passing theirs through,
// which repeats the NoBody rule: netx imports metrics, not the reverse). A
// copy flushes what it holds before such a Read, so nothing the source
// sent waits on what it has not.
func MayBlock(r io.Reader) bool {
	if r == http.NoBody {
		return false
	}
	wb, ok := r.(interface{ WouldBlock() bool })
	return !ok || wb.WouldBlock()
}

// noServerDefaults are the response fields net/http's servers add when a
// handler sets none (see Relay).
var noServerDefaults = []string{"Date", "Content-Type"}

// relayKey keys the cancel function Relay puts in a request's context.
type relayKey struct{}

// Relay prepares r, which a net/http handler relays through an
// httputil.ReverseProxy whose ModifyResponse is HeadFirst, for an upstream
// that answers before it has read the request body (a 413, a 401, an echo
// that streams), so that its answer reaches the client as it comes:
//   - on HTTP/1.x, the handler is declared full duplex: otherwise net/http's
//     server reads what is left of the body (up to 256 KiB) before it
//     writes a response head, while the transport is still reading it;
//   - the request's context, which Relay returns r with, ends when the
//     response body is closed (HeadFirst arranges it): net/http's HTTP/2
//     transport otherwise waits in Close for its goroutine that sends the
//     body, which waits for a client that waits for the end of the answer.
//
// Relay also returns w wrapped so that net/http's server adds no Date and
// no sniffed Content-Type to a final response whose upstream sent none
// (see asSent).
//
// The handler calls the returned cancel when it returns. A request without
// a body is returned as it is.
func Relay(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request, context.CancelFunc) {
	w = asSent{w}
	if r.Body == nil || r.Body == http.NoBody {
		return w, r, func() {}
	}
	if r.ProtoMajor == 1 {
		_ = http.NewResponseController(w).EnableFullDuplex() // HTTP/2's are
	}
	ctx, cancel := context.WithCancel(r.Context())
	return w, r.WithContext(context.WithValue(ctx, relayKey{}, cancel)), cancel
}

// asSent is a ResponseWriter whose final response keeps the fields its
// upstream sent and gets none of net/http's defaults: Date and
// Content-Type, which the server adds when a handler sets none (sniffing
// the body for the latter), are set without a value when absent as the
// head is written, which the server takes for present and writes nothing
// of. It is done at WriteHeader because ReverseProxy clears the header
// after each informational response. Unwrap gives http.ResponseController
// (flushes, hijacking, full duplex) the server's own.
type asSent struct{ http.ResponseWriter }

func (w asSent) WriteHeader(code int) {
	if code >= 200 {
		h := w.Header()
		for _, k := range noServerDefaults {
			if _, ok := h[k]; !ok {
				h[k] = nil
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w asSent) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// endsRequest is a relayed response body whose Close first ends its
// request's context (see Relay).
type endsRequest struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *endsRequest) Close() error {
	b.cancel()
	return b.ReadCloser.Close()
}

// WouldBlock passes the body's own on (see MayBlock).
func (b *endsRequest) WouldBlock() bool { return MayBlock(b.ReadCloser) }

// HeadFirst is an httputil.ReverseProxy ModifyResponse. ReverseProxy holds
// a fixed-length response's head until the body's first bytes arrive,
// however late they are: a client waiting for the head (a response-header
// timeout, a long poll that answers its headers at once) waits for the
// body too. When the body may block (it cannot tell, or tells it would, as
// h2.BufferedBody), HeadFirst sets ContentLength to -1, ReverseProxy's
// signal to flush the head at once and each write after it; the response
// is still framed by its Content-Length field, which stays in (or is put
// into) the header. A body already there goes out with the head as before.
func HeadFirst(resp *http.Response) error {
	if resp.Request != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		if cancel, ok := resp.Request.Context().Value(relayKey{}).(context.CancelFunc); ok {
			resp.Body = &endsRequest{ReadCloser: resp.Body, cancel: cancel}
		}
	}
	if resp.ContentLength <= 0 {
		return nil
	}
	if !MayBlock(resp.Body) {
		return nil
	}
	if _, ok := resp.Header["Content-Length"]; !ok {
		resp.Header["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	resp.ContentLength = -1
	return nil
}
