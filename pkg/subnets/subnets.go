package subnets

import (
	"fmt"
	"net/netip"
	"strings"
)

// Parse reads a comma-separated list of IPv4 and IPv6 CIDRs
// ("10.0.0.0/8,fd00::/8"). A bare address is taken as a /32 (IPv4) or a
// /128 (IPv6); space around an item and empty items are ignored. The
// prefixes are returned masked (10.1.2.3/8 is 10.0.0.0/8). IPv4-mapped IPv6
// (::ffff:10.0.0.1) and zones are refused: the kernel shows IPv4 traffic in
// neither form.
func Parse(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return nil, fmt.Errorf("subnet %q: not a CIDR", item)
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("subnet %q: not a CIDR or an address", item)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("subnet %q: an address with a zone", item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() {
			return nil, fmt.Errorf("subnet %q: an IPv4-mapped IPv6 address (write it as IPv4: %s)", item, a.Unmap())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ParseNetworks is Parse for a list that must name at least one network:
// the proxy's cluster networks, which the injector checks as the proxy does.
func ParseNetworks(s string) ([]netip.Prefix, error) {
	ps, err := Parse(s)
	if err == nil && len(ps) == 0 {
		err = fmt.Errorf("%q holds no network", s)
	}
	return ps, err
}

// Covers reports whether one of ps contains all of p.
func Covers(ps []netip.Prefix, p netip.Prefix) bool {
	for _, n := range ps {
		if n.Bits() <= p.Bits() && n.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// Contains reports whether a is in one of ps. An IPv4-mapped IPv6 address
// (as a dual-stack socket reports an IPv4 peer) is matched as IPv4.
func Contains(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
