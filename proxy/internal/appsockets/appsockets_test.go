package appsockets

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

// Lines as Linux 6.x prints them (the header, then one per socket).
const (
	tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tcp4      = tcpHeader +
		// uid 1000 listening on 0.0.0.0:8080
		"   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31337 1 0000000000000000 100 0 0 10 0\n" +
		// the proxy (uid 2102) listening on 127.0.0.1:4140
		"   1: 0100007F:102C 00000000:0000 0A 00000000:00000000 00:00000000 00000000  2102        0 31338 1 0000000000000000 100 0 0 10 0\n" +
		// uid 1000, in TIME_WAIT: no process holds it
		"   2: 0100007F:D431 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000\n" +
		// uid 0 established 10.244.0.7:41234 -> 10.96.0.1:443
		"   3: 0700F40A:A112 0100600A:01BB 01 00000000:00000000 02:000AFC80 00000000     0        0 31339 2 0000000000000000 20 4 30 10 -1\n"
	tcp6 = tcpHeader +
		// uid 1000 listening on [::]:9090
		"   0: 00000000000000000000000000000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41 1 0000000000000000 100 0 0 10 0\n" +
		// uid 1000 on [::ffff:127.0.0.1]:5353
		"   1: 0000000000000000FFFF00000100007F:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 42 2 0000000000000000 0\n" +
		// uid 1000 on [fe80::1]:53
		"   2: 000080FE000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 43 2 0000000000000000 0\n"
)

func TestParse(t *testing.T) {
	// The addresses above are written for a little-endian machine.
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the fixtures are a little-endian machine's")
	}
	for _, tc := range []struct {
		name, proto, in string
		uid             uint32
		want            []string
		err             string
	}{
		{name: "tcp others than the proxy", proto: "tcp", in: tcp4, uid: 2102,
			want: []string{"tcp 0.0.0.0:8080 uid 1000 state 0A", "tcp 10.244.0.7:41234 uid 0 state 01"}},
		{name: "tcp others than root", proto: "tcp", in: tcp4, uid: 0,
			want: []string{"tcp 0.0.0.0:8080 uid 1000 state 0A", "tcp 127.0.0.1:4140 uid 2102 state 0A"}},
		{name: "tcp6", proto: "tcp6", in: tcp6, uid: 2102,
			want: []string{"tcp6 [::]:9090 uid 1000 state 0A", "tcp6 127.0.0.1:5353 uid 1000 state 07", "tcp6 [fe80::1]:53 uid 1000 state 07"}},
		{name: "header only", proto: "udp", in: tcpHeader, uid: 2102},
		{name: "empty", proto: "udp", in: "", uid: 2102},
		{name: "short line", proto: "tcp", uid: 2102, in: tcpHeader + "   0: 00000000:1F90 00000000:0000 0A\n",
			err: "/proc/net/tcp line 2: 4 fields, want at least 10"},
		{name: "bad address", proto: "tcp", uid: 2102,
			in:  tcpHeader + "   0: 000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31337 1\n",
			err: `line 2: local address "000000:1F90": not 8 or 32 hex digits`},
		{name: "bad uid", proto: "tcp", uid: 2102,
			in:  tcpHeader + "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  x        0 31337 1\n",
			err: `line 2: uid "x"`},
		{name: "bad inode", proto: "tcp", uid: 2102,
			in:  tcpHeader + "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 -1 1\n",
			err: `line 2: inode "-1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(nil, strings.NewReader(tc.in), tc.proto, tc.uid)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, sock := range got {
				s = append(s, sock.String())
			}
			if !slices.Equal(s, tc.want) {
				t.Errorf("got %q\nwant %q", s, tc.want)
			}
		})
	}
}

// TestHeldOnThisMachine reads this machine's /proc/net: a listener of this
// process is listed unless its user is the one left out; a connection this
// process closed first (its socket left to the kernel in FIN_WAIT or
// TIME_WAIT) is no longer listed while its peer, still open, is.
func TestHeldOnThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	me := uint32(os.Geteuid())
	other := me + 1
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnAddr := netip.MustParseAddrPort(ln.Addr().String())
	listed := func(uid uint32, addr netip.AddrPort) bool {
		t.Helper()
		held, err := Held("/proc", uid)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(held, func(s Socket) bool { return s.Proto == "tcp" && s.Local == addr && s.UID == me })
	}
	if !listed(other, lnAddr) {
		t.Fatalf("this process's listener on %s is not listed", lnAddr)
	}
	if listed(me, lnAddr) {
		t.Fatalf("this process's listener on %s is listed though its user (%d) is left out", lnAddr, me)
	}

	c, err := net.Dial("tcp", lnAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	if !listed(other, client) {
		t.Fatalf("the open client socket %s is not listed", client)
	}
	c.Close()
	if listed(other, client) {
		t.Errorf("the client socket %s is listed after its close (no process holds it)", client)
	}
}

// FuzzParse: any input gives sockets or an error, never a panic, and every
// socket listed has a valid address and is not the left-out user's.
func FuzzParse(f *testing.F) {
	f.Add([]byte(tcp4), "tcp")
	f.Add([]byte(tcp6), "tcp6")
	f.Add([]byte(tcpHeader+"0: 0:0 0:0 0 0 0 0 1 0 1\n"), "udp")
	f.Fuzz(func(t *testing.T, in []byte, proto string) {
		got, err := Parse(nil, bytes.NewReader(in), proto, 2102)
		if err != nil {
			return
		}
		for _, s := range got {
			if !s.Local.IsValid() || s.UID == 2102 || s.Proto != proto {
				t.Fatalf("listed %+v", s)
			}
		}
	})
}
