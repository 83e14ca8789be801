package netx

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpStateClose is TCP_CLOSE (include/net/tcp_states.h): the state a
// socket is left in by a reset from its peer or a timeout, while one the
// proxy still holds open that only saw FINs is in another.
const tcpStateClose = 7

// spliceFailed tells which side of a splice(2) copy from src to dst failed
// with err: splice's errno does not say whether the read or the write
// failed (ECONNRESET may be either). It is the socket that a reset or a
// timeout closed (TCP_CLOSE, in TCP_INFO); when the state does not tell
// (neither socket, or it cannot be read), the destination for EPIPE, which
// only a write returns, and the source otherwise. It runs on errors only.
func spliceFailed(src, dst *net.TCPConn, err error) (srcFailed, dstFailed bool) {
	if s, d := tcpClosed(src), tcpClosed(dst); s || d {
		return s, d
	}
	if errors.Is(err, syscall.EPIPE) {
		return false, true
	}
	return true, false
}

// tcpClosed reports whether c's socket is in TCP_CLOSE (false when its
// state cannot be read: its descriptor is closed, say).
func tcpClosed(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return false
	}
	return info.State == tcpStateClose
}
