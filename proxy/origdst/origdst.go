package origdst

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Resolver returns the original destination of an accepted connection.
type Resolver interface {
	OriginalDst(c net.Conn) (netip.AddrPort, error)
}

// Func adapts a function to Resolver.
type Func func(c net.Conn) (netip.AddrPort, error)

// OriginalDst calls f.
func (f Func) OriginalDst(c net.Conn) (netip.AddrPort, error) { return f(c) }

// Static always answers addr (benchmarks and tests without iptables).
func Static(addr netip.AddrPort) Resolver {
	return Func(func(net.Conn) (netip.AddrPort, error) { return addr, nil })
}

// ErrNotRedirected means no NAT rule redirected the connection: the kernel
// has no record of it, or its original destination is the listener itself.
var ErrNotRedirected = errors.New("origdst: connection was not redirected")

// Kernel reads the original destination from the kernel's conntrack.
type Kernel struct{}

// OriginalDst implements Resolver with getsockopt.
func (Kernel) OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("origdst: not a TCP connection (%T)", c)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: %w", err)
	}
	local, _ := tc.LocalAddr().(*net.TCPAddr)
	v6 := local != nil && local.IP.To4() == nil
	var out netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		if v6 {
			var sa unix.RawSockaddrInet6
			size := uint32(unsafe.Sizeof(sa))
			serr = getsockopt(int(fd), unix.SOL_IPV6, ip6tSoOriginalDst, unsafe.Pointer(&sa), &size)
			if serr == nil {
				port := uint16(sa.Port>>8) | uint16(sa.Port<<8)
				out = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
			}
			return
		}
		var sa unix.RawSockaddrInet4
		size := uint32(unsafe.Sizeof(sa))
		serr = getsockopt(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), &size)
		if serr == nil {
			port := uint16(sa.Port>>8) | uint16(sa.Port<<8)
			out = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
		}
	})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: %w", err)
	}
	if serr != nil {
		if errors.Is(serr, unix.ENOENT) {
			return netip.AddrPort{}, ErrNotRedirected
		}
		return netip.AddrPort{}, fmt.Errorf("origdst: getsockopt: %w", serr)
	}
	// With conntrack loaded, a connection that no NAT rule touched has a
	// record too, whose original destination is the socket's own address:
	// the connection came straight to the listener. Forwarding it there
	// would loop back into the proxy.
	if local != nil {
		if la, ok := netip.AddrFromSlice(local.IP); ok && out.Addr().Unmap() == la.Unmap() && out.Port() == uint16(local.Port) {
			return netip.AddrPort{}, ErrNotRedirected
		}
	}
	return out, nil
}

func getsockopt(fd, level, name int, val unsafe.Pointer, size *uint32) error {
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(name), uintptr(val), uintptr(unsafe.Pointer(size)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h.
const ip6tSoOriginalDst = 80
