package app

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestListenAddrAndTwin(t *testing.T) {
	for _, tc := range []struct {
		in, want, twin string // twin "" for none
	}{
		{"0.0.0.0:4143", "0.0.0.0:4143", "::"},
		{":4143", "0.0.0.0:4143", "::"},
		{"127.0.0.1:4140", "127.0.0.1:4140", "::1"},
		{"127.0.0.2:4140", "127.0.0.2:4140", "::1"},
		{"localhost:4140", "127.0.0.1:4140", "::1"},
		{"[::]:4143", "[::]:4143", "0.0.0.0"},
		{"[::1]:4140", "[::1]:4140", "127.0.0.1"},
		{"[::ffff:127.0.0.1]:4140", "127.0.0.1:4140", "::1"},
		{"10.1.2.3:4143", "10.1.2.3:4143", ""},
		{"[fd00::1]:4143", "[fd00::1]:4143", ""},
	} {
		ap, err := listenAddr(tc.in)
		if err != nil || ap.String() != tc.want {
			t.Errorf("listenAddr(%q) = %v, %v; want %s", tc.in, ap, err, tc.want)
			continue
		}
		tw, ok := twin(ap.Addr())
		if got := map[bool]string{true: tw.String(), false: ""}[ok]; got != tc.twin {
			t.Errorf("twin(%s) = %q, want %q", ap.Addr(), got, tc.twin)
		}
	}
	for _, bad := range []string{"4143", "host:4143", "0.0.0.0:70000"} {
		if _, err := listenAddr(bad); err == nil {
			t.Errorf("listenAddr(%q) accepted", bad)
		}
	}
}

// TestListen: one socket per family, the twin at the same port (for port 0
// too), and an error naming the listener when the twin's port is taken.
func TestListen(t *testing.T) {
	if err := probeIPv6(); err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	l, err := listen("outbound", "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addrs := strings.Split(listenAddrs(l), ",")
	port := l.Addr().(*net.TCPAddr).Port
	if len(addrs) != 2 || addrs[0] != l.Addr().String() || addrs[1] != net.JoinHostPort("::1", strconv.Itoa(port)) {
		t.Fatalf("listening on %v", addrs)
	}
	// A connection on each family is accepted, with a socket of its family.
	for _, dial := range addrs {
		c, err := net.Dial("tcp", dial)
		if err != nil {
			t.Fatal(err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.LocalAddr().String(); got != dial {
			t.Errorf("accepted at %s, dialled %s", got, dial)
		}
		s.Close()
		c.Close()
	}
	// The twin's port is taken: the error says which listener.
	_, err = listen("inbound", "0.0.0.0:"+strconv.Itoa(port), true)
	if err == nil || !strings.Contains(err.Error(), "proxy: inbound listener") {
		t.Errorf("listen over a taken port: %v", err)
	}
	// Without twins, the configured family alone.
	l4, err := listen("inbound", "0.0.0.0:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("::1", strconv.Itoa(l4.Addr().(*net.TCPAddr).Port)), time.Second); err == nil {
		c.Close()
		t.Error("an IPv4 listener without twin accepts IPv6")
	}
}

// TestMultiListenerClose: Accept returns net.ErrClosed once closed (as a
// listener's Serve loop expects), also in an Accept already waiting, and
// Close is idempotent.
func TestMultiListenerClose(t *testing.T) {
	a, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newMultiListener(a, b)
	waiting := make(chan error, 1)
	go func() { _, err := m.Accept(); waiting <- err }()
	time.Sleep(20 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; !errors.Is(err, net.ErrClosed) {
		t.Errorf("waiting Accept: %v, want net.ErrClosed", err)
	}
	if _, err := m.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", b.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the second listener still accepts")
	}
}
