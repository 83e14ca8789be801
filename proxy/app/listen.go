package app

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Listeners are bound one socket per family, never one dual-stack socket: an
// IPv4 connection then has an IPv4 socket, whose original destination the
// kernel keeps in the IPv4 conntrack (SO_ORIGINAL_DST), and an IPv6 one an
// IPv6 socket (IP6T_SO_ORIGINAL_DST), whatever the host's bindv6only.
// proxy-init's ip6tables rules redirect to the same ports as its iptables
// ones, at ::1 for locally generated traffic (outbound) and at the pod's
// address for inbound traffic, so each IPv4 wildcard or loopback listener
// gets an IPv6 twin at the same port (and an IPv6 one an IPv4 twin).

// twinAttempts bounds the tries at a free port for both families when the
// configured port is 0 (tests): the port the first family got may be taken
// in the other.
const twinAttempts = 5

// probeIPv6 tells whether the host can serve IPv6: ::1 can be bound. It
// cannot without IPv6 in the kernel (EAFNOSUPPORT) or with IPv6 disabled in
// the network namespace (no ::1: EADDRNOTAVAIL).
func probeIPv6() error {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return err
	}
	return l.Close()
}

// listenAddr parses a listen address as config checked it: "ip:port",
// "localhost:port" (127.0.0.1) or ":port" (0.0.0.0).
func listenAddr(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q out of range", port)
	}
	var ip netip.Addr
	switch host {
	case "":
		ip = netip.IPv4Unspecified()
	case "localhost":
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, err
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}

// twin is the other family's address that matches ip: the wildcard for a
// wildcard, loopback for loopback. Other addresses have none.
func twin(ip netip.Addr) (netip.Addr, bool) {
	switch {
	case ip == netip.IPv4Unspecified():
		return netip.IPv6Unspecified(), true
	case ip.Is4() && ip.IsLoopback():
		return netip.IPv6Loopback(), true
	case ip == netip.IPv6Unspecified():
		return netip.IPv4Unspecified(), true
	case ip == netip.IPv6Loopback():
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
	}
	return netip.Addr{}, false
}

func family(ip netip.Addr) string {
	if ip.Is4() {
		return "tcp4"
	}
	return "tcp6"
}

// listen binds the listener called name at addr, in addr's family only,
// and, with twins, its twin in the other family at the same port. A twin
// that cannot be bound is an error (at a fixed port something else holds
// it, and the connections redirected there would reach that instead).
func listen(name, addr string, twins bool) (net.Listener, error) {
	ap, err := listenAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: %s listener %q: %w", name, addr, err)
	}
	other, ok := twin(ap.Addr())
	for attempt := 1; ; attempt++ {
		l, err := net.Listen(family(ap.Addr()), ap.String())
		if err != nil {
			return nil, fmt.Errorf("proxy: %s listener: %w", name, err)
		}
		if !twins || !ok {
			return l, nil
		}
		port := uint16(l.Addr().(*net.TCPAddr).Port)
		l2, err := net.Listen(family(other), netip.AddrPortFrom(other, port).String())
		if err == nil {
			return newMultiListener(l, l2), nil
		}
		_ = l.Close()
		if ap.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) || attempt == twinAttempts {
			return nil, fmt.Errorf("proxy: %s listener (IPv6 and IPv4 at port %d): %w", name, port, err)
		}
	}
}

// listenAddrs lists a listener's addresses, comma-separated, for the log.
func listenAddrs(l net.Listener) string {
	if m, ok := l.(*multiListener); ok {
		s := make([]string, len(m.ls))
		for i, l := range m.ls {
			s[i] = l.Addr().String()
		}
		return strings.Join(s, ",")
	}
	return l.Addr().String()
}

// multiListener accepts the connections of several listeners as one; its
// address is the first's. An error of one listener is returned by Accept
// like a single listener's; Close closes them all.
type multiListener struct {
	ls       []net.Listener
	accepted chan accepted
	done     chan struct{}
	once     sync.Once
	closeErr error
}

type accepted struct {
	c   net.Conn
	err error
}

func newMultiListener(ls ...net.Listener) *multiListener {
	m := &multiListener{ls: ls, accepted: make(chan accepted), done: make(chan struct{})}
	for _, l := range ls {
		go m.run(l)
	}
	return m
}

// run hands l's connections and errors to Accept until the listener is
// closed. The channel is unbuffered: it accepts no further than the caller
// does, so a caller that backs off after an error (EMFILE) throttles it.
func (m *multiListener) run(l net.Listener) {
	for {
		c, err := l.Accept()
		select {
		case m.accepted <- accepted{c, err}:
		case <-m.done:
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Accept implements net.Listener.
func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case a := <-m.accepted:
		return a.c, a.err
	case <-m.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: m.Addr(), Err: net.ErrClosed}
	}
}

// Close implements net.Listener.
func (m *multiListener) Close() error {
	m.once.Do(func() {
		close(m.done)
		var errs []error
		for _, l := range m.ls {
			errs = append(errs, l.Close())
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// Addr implements net.Listener: the first listener's address.
func (m *multiListener) Addr() net.Addr { return m.ls[0].Addr() }
