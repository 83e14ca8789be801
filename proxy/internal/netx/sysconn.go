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
// 20 µs polling sleeps that follow cost context switches, which are most of
// its CPU on a virtual machine (see docs/proxy.md).
//
// Everything but Read and Write (deadlines, Close, CloseWrite, splice through
// ReadFrom) is the embedded *net.TCPConn's.
type SysConn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu  sync.Mutex
	rbuf []byte
	rn   int
	rerr error
	rfn  func(uintptr) bool

	wmu  sync.Mutex
	wbuf []byte
	wn   int
	werr error
	wfn  func(uintptr) bool
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
	s := &SysConn{TCPConn: tc, rc: rc}
	s.rfn = s.readFD
	s.wfn = s.writeFD
	return s
}

// NetConn returns the wrapped *net.TCPConn.
func (s *SysConn) NetConn() net.Conn { return s.TCPConn }

// Read implements net.Conn.
func (s *SysConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	s.rbuf, s.rn, s.rerr = p, 0, nil
	err := s.rc.Read(s.rfn)
	n := s.rn
	if err == nil {
		err = s.rerr
	}
	s.rbuf, s.rerr = nil, nil
	s.rmu.Unlock()
	if err != nil {
		return n, s.opError("read", err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (s *SysConn) readFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case 0:
			s.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for the poller, then call again
		default:
			s.rerr = os.NewSyscallError("read", e)
			return true
		}
	}
}

// Write implements net.Conn: it writes all of p or fails.
func (s *SysConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.wmu.Lock()
	s.wbuf, s.wn, s.werr = p, 0, nil
	err := s.rc.Write(s.wfn)
	n := s.wn
	if err == nil {
		err = s.werr
	}
	s.wbuf, s.werr = nil, nil
	s.wmu.Unlock()
	if err != nil {
		return n, s.opError("write", err)
	}
	return n, nil
}

func (s *SysConn) writeFD(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		rest := s.wbuf[s.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			s.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.werr = os.NewSyscallError("write", e)
			return true
		}
	}
	return true
}

func (s *SysConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// Dialer dials TCP connections as SysConns.
type Dialer struct{ net.Dialer }

// DialContext dials like net.Dialer and wraps a TCP connection in a SysConn.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return NewSysConn(c), nil
}
