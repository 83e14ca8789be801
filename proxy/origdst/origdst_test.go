package origdst

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestKernelWithoutRedirect(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		l, err := net.Listen(network, map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
		if err != nil {
			t.Logf("%s: %v (skipped)", network, err)
			continue
		}
		c, err := net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		_, err = Kernel{}.OriginalDst(s)
		// Without a NAT redirect the kernel has no record. Some kernels without
		// conntrack answer ENOPROTOOPT instead: still an error, never a wrong address.
		if err == nil {
			t.Errorf("%s: original destination of a direct connection", network)
		} else if !errors.Is(err, ErrNotRedirected) {
			t.Logf("%s: %v", network, err)
		}
		c.Close()
		s.Close()
		l.Close()
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := (Kernel{}).OriginalDst(a); err == nil {
		t.Error("a pipe has no original destination")
	}
}

func TestStatic(t *testing.T) {
	want := netip.MustParseAddrPort("10.0.0.1:80")
	got, err := Static(want).OriginalDst(nil)
	if err != nil || got != want {
		t.Errorf("got %v %v", got, err)
	}
}
