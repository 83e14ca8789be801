package netx

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// SysConn is a TCP connection whose reads and writes are made as raw system
// calls, still waiting on Go's network poller when the socket is not ready.
//
// A read or write of a non-blocking socket never blocks in the kernel, so the
// runtime need not hand the processor off around it, and, unlike a system
// call through syscall.Syscall, it does not wake the runtime's monitor thread
// (sysmon) when the process was idle. A proxy at a constant moderate rate is
// idle between requests, so on every request that wake-up and the monitor's
// 20 µs polling sleeps that follow cost context switches, a large part of its
// CPU on a virtual machine (see Tuning in docs/proxy.md).
//
// Everything but Read and Write (deadlines, Close, CloseWrite, splice through
// ReadFrom) is the embedded *net.TCPConn's.
type SysConn struct {
	*net.TCPConn
	r, w half
}

// half is one direction: its operation, and the call in progress (the
// buffer and results that fn, handed to syscall.RawConn, works on; fn is made
// once per connection, so that a call allocates nothing). mu keeps concurrent
// callers apart.
type half struct {
	op   string                            // "read" or "write", for errors
	wait func(func(fd uintptr) bool) error // RawConn.Read or RawConn.Write
	fn   func(fd uintptr) bool

	mu  sync.Mutex
	buf []byte
	n   int
	err error
	// bp is the pooled buffer of a ReadPooled call (buf is *bp), and
	// pooledFn its fn, made on the first one.
	bp       *[]byte
	pooledFn func(fd uintptr) bool
}

// do runs fn on the descriptor for p, waiting for the poller between tries,
// and returns what it moved; an error is a *net.OpError, as net.Conn's are.
func (h *half) do(s *SysConn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf, h.n, h.err = p, 0, nil
	err := h.wait(h.fn)
	if err == nil {
		err = h.err
	}
	n := h.n
	h.buf, h.err = nil, nil
	if err != nil {
		return n, &net.OpError{Op: h.op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
	}
	return n, nil
}

// NewSysConn wraps c; when c is not a *net.TCPConn (or its raw descriptor
// is unavailable), it returns c unchanged.
func NewSysConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &SysConn{TCPConn: tc}
	s.r.op, s.r.wait, s.r.fn = "read", rc.Read, s.r.readFD
	s.w.op, s.w.wait, s.w.fn = "write", rc.Write, s.w.writeFD
	return s
}

// NetConn returns the wrapped *net.TCPConn.
func (s *SysConn) NetConn() net.Conn { return s.TCPConn }

// Read implements net.Conn.
func (s *SysConn) Read(p []byte) (int, error) {
	n, err := s.r.do(s, p)
	if n == 0 && err == nil && len(p) > 0 {
		return 0, io.EOF // the peer closed its side
	}
	return n, err
}

// Write implements net.Conn: it writes all of p or fails.
func (s *SysConn) Write(p []byte) (int, error) { return s.w.do(s, p) }

// readPooled reads like Read, into a 64 KiB copy buffer (pipeBufs) taken
// only once the socket has bytes to read, and returns it (counted in
// bigLent) with the bytes read; the caller puts it back. While the read
// waits it holds no buffer: an idle opaque connection's copy waits here.
// The system calls are those of Read; only a read that would block takes
// and returns the buffer once more.
func (s *SysConn) readPooled() (*[]byte, int, error) {
	h := &s.r
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pooledFn == nil {
		h.pooledFn = h.readPooledFD
	}
	h.n, h.err = 0, nil
	err := h.wait(h.pooledFn)
	if err == nil {
		err = h.err
	}
	bp, n := h.bp, h.n
	h.bp, h.buf, h.err = nil, nil, nil
	if err != nil || n == 0 {
		if bp != nil {
			pipeBufs.Put(bp)
		}
		if err != nil {
			return nil, 0, &net.OpError{Op: h.op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
		}
		return nil, 0, io.EOF // the peer closed its side
	}
	bigLent.Add(1)
	return bp, n, nil
}

// readPooledFD is readFD into a pooled buffer, taken when the poller says
// the socket is readable (or on the first try) and returned when the read
// would block.
func (h *half) readPooledFD(fd uintptr) bool {
	if h.bp == nil {
		h.bp = pipeBufs.Get().(*[]byte)
		h.buf = *h.bp
	}
	if h.readFD(fd) {
		return true
	}
	pipeBufs.Put(h.bp)
	h.bp, h.buf = nil, nil
	return false
}

// readFD reads once into h.buf; false asks the poller to wait.
func (h *half) readFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&h.buf[0])), uintptr(len(h.buf)))
		switch e {
		case 0:
			h.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			h.err = os.NewSyscallError("read", e)
			return true
		}
	}
}

// writeFD writes what is left of h.buf; false asks the poller to wait.
func (h *half) writeFD(fd uintptr) bool {
	for h.n < len(h.buf) {
		rest := h.buf[h.n:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			h.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			h.err = os.NewSyscallError("write", e)
			return true
		}
	}
	return true
}

// Dialer dials TCP connections as SysConns. Both of its dial methods wrap:
// the embedded net.Dialer's Dial, if it were promoted, would not.
type Dialer struct{ net.Dialer }

// Dial is DialContext with a background context.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialContext dials like net.Dialer and wraps a TCP connection in a SysConn.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return NewSysConn(c), nil
}
