package subnets

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "10.0.0.0/8,192.168.1.7", want: "10.0.0.0/8,192.168.1.7/32"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: "fd00::/8", want: "fd00::/8"},
		{in: "fd00::1:2/64, 2001:db8::1,10.0.0.1", want: "fd00::/64,2001:db8::1/128,10.0.0.1/32"},
		{in: " , ", want: ""},
		{in: "::ffff:10.0.0.1", wantErr: `subnet "::ffff:10.0.0.1": an IPv4-mapped IPv6 address (write it as IPv4: 10.0.0.1)`},
		{in: "::ffff:10.0.0.0/104", wantErr: "IPv4-mapped"},
		{in: "fe80::1%eth0", wantErr: `subnet "fe80::1%eth0": an address with a zone`},
		{in: "fd00::/129", wantErr: `subnet "fd00::/129": not a CIDR`},
		{in: "10.0.0.0/33", wantErr: "not a CIDR"},
		{in: "10.0.0.0/8,nope", wantErr: `subnet "nope": not a CIDR or an address`},
	} {
		got, err := Parse(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if strings.Join(s, ",") != tc.want {
			t.Errorf("Parse(%q) = %v, want %s", tc.in, s, tc.want)
		}
	}
}

func TestContains(t *testing.T) {
	ps, err := Parse("10.0.0.0/8,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"10.244.0.7", true},
		{"::ffff:10.244.0.7", true}, // an IPv4 peer on a dual-stack socket
		{"11.0.0.1", false},
		{"192.0.2.2", false},
		{"fd10:244::7", true},
		{"2001:db8::1", false},
		{"::ffff:11.0.0.1", false},
	} {
		if got := Contains(ps, netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Contains(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if Contains(nil, netip.MustParseAddr("10.0.0.1")) {
		t.Error("an empty list contains an address")
	}
}

func TestCovers(t *testing.T) {
	ps, _ := Parse("10.0.0.0/8,fc00::/7")
	for _, tc := range []struct {
		prefix string
		want   bool
	}{
		{"10.244.0.0/16", true},
		{"10.0.0.0/8", true},
		{"10.0.0.0/7", false}, // wider than the network
		{"fd10:96::/112", true},
		{"100.64.0.0/10", false},
	} {
		if got := Covers(ps, netip.MustParsePrefix(tc.prefix)); got != tc.want {
			t.Errorf("Covers(%s) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
}

func TestParseNetworks(t *testing.T) {
	if _, err := ParseNetworks(" , "); err == nil || err.Error() != `" , " holds no network` {
		t.Errorf("ParseNetworks of no network: %v", err)
	}
	if ps, err := ParseNetworks("10.0.0.0/8"); err != nil || len(ps) != 1 {
		t.Errorf("ParseNetworks = %v, %v", ps, err)
	}
}

// FuzzParse: an accepted list holds only masked IPv4 or IPv6 prefixes
// (never IPv4-mapped, never with a zone), and their rendering reads back
// the same.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8,192.168.1.7", "10.1.2.3/8", "fd00::/8", "::ffff:10.0.0.1", " , 1.2.3.4/32,", "fe80::1%eth0", "2001:db8::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := Parse(s)
		if err != nil {
			return
		}
		var back []string
		for _, p := range ps {
			if a := p.Addr(); a.Is4In6() || a.Zone() != "" || !a.IsValid() || p != p.Masked() {
				t.Fatalf("Parse(%q) returned %s", s, p)
			}
			back = append(back, p.String())
		}
		again, err := Parse(strings.Join(back, ","))
		if err != nil || len(again) != len(ps) {
			t.Fatalf("Parse(%q) = %v reads back as %v, %v", s, ps, again, err)
		}
		for i := range ps {
			if again[i] != ps[i] {
				t.Fatalf("Parse(%q) = %v reads back as %v", s, ps, again)
			}
		}
	})
}
