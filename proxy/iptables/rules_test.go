package iptables

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/pkg/ports"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

func defaults() Config {
	return Config{InboundPort: DefaultInboundPort, OutboundPort: DefaultOutboundPort, ProxyUID: DefaultProxyUID}
}

func mustPorts(t testing.TB, s string) []ports.Range {
	t.Helper()
	p, err := ports.Parse(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRulesetGolden: each family's ruleset for the defaults, for every kind
// of skip, and over a table that holds other rules and old Conduit ones
// (kept and replaced). The IPv4 files did not change when IPv6 came: the
// IPv6 subnets of the skips config go to the IPv6 table only.
func TestRulesetGolden(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	skips := defaults()
	skips.InboundPortsToIgnore = mustPorts(t, "22,8000-8100,9000")
	skips.OutboundPortsToIgnore = mustPorts(t, "3306,5432,6379,11211,443,1-10,20-30,40-50,60-70,80-90,100-110,120-130,140-150")
	skips.SubnetsToIgnore = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("169.254.169.254/32"),
		netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("fd00:1::/32"), netip.MustParsePrefix("fd00:ec2::254/128"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	for _, tc := range []struct {
		name    string
		family  Family
		current string
		cfg     Config
	}{
		{"defaults.rules", IPv4, "", defaults()},
		{"skips.rules", IPv4, "", skips},
		// Other tables and foreign nat rules are kept; old Conduit rules are replaced.
		{"existing.rules", IPv4, read("existing.save"), skips},
		{"defaults6.rules", IPv6, "", defaults()},
		{"skips6.rules", IPv6, "", skips},
		{"existing6.rules", IPv6, read("existing6.save"), skips},
	} {
		t.Run(tc.name, func(t *testing.T) {
			golden(t, tc.name, tc.cfg.Ruleset(tc.family, tc.current))
		})
	}
}

func TestRulesetIdempotent(t *testing.T) {
	for _, f := range Families {
		c := defaults()
		c.OutboundPortsToIgnore = mustPorts(t, "443")
		c.SubnetsToIgnore, _ = ParseSubnets("10.0.0.0/8,fd00::/8")
		first := c.Ruleset(f, "")
		if second := c.Ruleset(f, first); second != first {
			t.Errorf("%s: rebuilding over our own output changed it:\n%s\nvs\n%s", f, first, second)
		}
		// A different configuration replaces, never accumulates.
		d := defaults()
		if got := d.Ruleset(f, first); got != d.Ruleset(f, "") {
			t.Errorf("%s: old rules survived:\n%s", f, got)
		}
	}
}

// TestParseSubnets: the errors say which setting is at fault
// (subnets.Parse is tested in its package).
func TestParseSubnets(t *testing.T) {
	if _, err := ParseSubnets("10.0.0.0/8,nope"); err == nil || !strings.HasPrefix(err.Error(), `iptables: subnet "nope"`) {
		t.Errorf("ParseSubnets: %v", err)
	}
	if ps, err := ParseSubnets("10.1.2.3/8"); err != nil || len(ps) != 1 || ps[0].String() != "10.0.0.0/8" {
		t.Errorf("ParseSubnets = %v, %v", ps, err)
	}
}
func TestValidate(t *testing.T) {
	bad := []Config{
		{InboundPort: 0, OutboundPort: 4140, ProxyUID: 2102},
		{InboundPort: 4143, OutboundPort: 4143, ProxyUID: 2102},
		{InboundPort: 4143, OutboundPort: 4140, ProxyUID: 0},
		{InboundPort: 4143, OutboundPort: 4140, ProxyUID: 2102, InboundPortsToIgnore: []ports.Range{{From: 4100, To: 4200}}},
		{InboundPort: 4143, OutboundPort: 4140, ProxyUID: 2102, IPv6: "maybe"},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
	if err := defaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestParseIPv6Mode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want IPv6Mode
	}{
		{"auto", IPv6Auto}, {" ON", IPv6On}, {"off", IPv6Off}, {"", ""}, {"true", ""},
	} {
		got, err := ParseIPv6Mode(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("ParseIPv6Mode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err != nil && (!strings.HasPrefix(err.Error(), "iptables: unknown IPv6 mode ") || !strings.Contains(err.Error(), "accepted: auto, on, off")) {
			t.Errorf("ParseIPv6Mode(%q): %v does not say iptables, nor list the accepted values", tc.in, err)
		}
	}
}
