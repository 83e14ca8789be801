package iptables

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/conduit-mesh/conduit/pkg/ipv6mode"
	"github.com/conduit-mesh/conduit/pkg/ports"
	"github.com/conduit-mesh/conduit/pkg/subnets"
)

// Chain names owned by Conduit. Every rule that lives in them or jumps to
// them is rebuilt on each run.
const (
	InboundChain  = "CONDUIT_INBOUND"
	OutboundChain = "CONDUIT_OUTBOUND"
	chainPrefix   = "CONDUIT_"
)

// Defaults from docs/architecture.md.
const (
	DefaultInboundPort  = 4143
	DefaultOutboundPort = 4140
	DefaultProxyUID     = 2102
)

// AlwaysSkippedInboundPorts are never redirected inbound: the proxy's admin
// port (4191) and 4190, reserved for the proxy's own use.
var AlwaysSkippedInboundPorts = []ports.Range{{From: 4190, To: 4191}}

// multiportMax is the number of ports (a range counts twice) one multiport
// match accepts.
const multiportMax = 15

// rulePorts spells a range as iptables does, with a colon.
func rulePorts(r ports.Range) string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return fmt.Sprintf("%d:%d", r.From, r.To)
}

// Family is an IP version. Each has its own nat table, programmed with its
// own tools (iptables, ip6tables) from the same Config.
type Family int

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// Families lists the families in the order they are programmed.
var Families = []Family{IPv4, IPv6}

// String is "IPv4" or "IPv6".
func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// tool is the family's command prefix: iptables or ip6tables.
func (f Family) tool() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// loopback is the family's loopback network: its traffic stays local. For
// locally generated traffic REDIRECT sends to its first address (127.0.0.1,
// ::1), where the proxy's listeners are.
func (f Family) loopback() netip.Prefix {
	if f == IPv6 {
		return netip.PrefixFrom(netip.IPv6Loopback(), 128)
	}
	return netip.MustParsePrefix("127.0.0.0/8")
}

// holds reports whether p belongs to the family.
func (f Family) holds(p netip.Prefix) bool { return p.Addr().Is4() == (f == IPv4) }

// ParseSubnets parses a comma-separated list of IPv4 and IPv6 CIDRs
// ("10.0.0.0/8,fd00::/8") as subnets.Parse does: IPv4 traffic is never
// seen by ip6tables as IPv4-mapped IPv6, which it refuses.
func ParseSubnets(s string) ([]netip.Prefix, error) {
	ps, err := subnets.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return ps, nil
}

// Config says what to redirect where.
type Config struct {
	InboundPort  uint16 // the proxy's inbound listener (4143)
	OutboundPort uint16 // the proxy's outbound listener (4140)
	ProxyUID     uint32 // the proxy's UID (2102): its traffic is never redirected
	// InboundPortsToIgnore are destination ports of inbound connections that
	// bypass the proxy; AlwaysSkippedInboundPorts are added to them.
	InboundPortsToIgnore []ports.Range
	// OutboundPortsToIgnore are destination ports of outbound connections
	// that bypass the proxy.
	OutboundPortsToIgnore []ports.Range
	// SubnetsToIgnore are destinations of outbound connections that bypass
	// the proxy: the IPv4 ones in the IPv4 nat table, the IPv6 ones in the
	// IPv6 nat table.
	SubnetsToIgnore []netip.Prefix
	// IPv6 says whether the IPv6 nat table is programmed too ("" is
	// IPv6Auto).
	IPv6 IPv6Mode
}

// IPv6Mode says whether the IPv6 nat table is programmed: the mode the
// proxy takes too (package ipv6mode).
type IPv6Mode = ipv6mode.Mode

// IPv6 modes. Whatever the mode, the IPv4 rules are installed.
const (
	// IPv6Auto programs it when the network namespace has IPv6 and
	// ip6tables can use its nat table, and otherwise logs why not.
	IPv6Auto = ipv6mode.Auto
	// IPv6On programs it, and fails when it cannot.
	IPv6On = ipv6mode.On
	// IPv6Off leaves it alone: IPv6 connections bypass the proxy.
	IPv6Off = ipv6mode.Off
)

// ParseIPv6Mode accepts auto, on and off, in any case and with space
// around them (ipv6mode.Parse of the folded value).
func ParseIPv6Mode(s string) (IPv6Mode, error) {
	m, err := ipv6mode.Parse(strings.ToLower(strings.TrimSpace(s)))
	if err != nil {
		return "", fmt.Errorf("iptables: %w", err)
	}
	return m, nil
}

// ipv6Mode is c.IPv6 with the default filled in.
func (c Config) ipv6Mode() IPv6Mode {
	if c.IPv6 == "" {
		return IPv6Auto
	}
	return c.IPv6
}

// Validate checks the ports and the UID.
func (c Config) Validate() error {
	var errs []error
	if c.InboundPort == 0 {
		errs = append(errs, errors.New("iptables: inbound proxy port must be 1-65535"))
	}
	if c.OutboundPort == 0 {
		errs = append(errs, errors.New("iptables: outbound proxy port must be 1-65535"))
	}
	if c.InboundPort == c.OutboundPort && c.InboundPort != 0 {
		errs = append(errs, fmt.Errorf("iptables: inbound and outbound proxy ports are both %d", c.InboundPort))
	}
	if c.ProxyUID == 0 {
		errs = append(errs, errors.New("iptables: proxy UID must not be 0 (root's traffic would bypass the proxy)"))
	}
	for _, r := range c.InboundPortsToIgnore {
		if r.From <= c.InboundPort && c.InboundPort <= r.To {
			errs = append(errs, fmt.Errorf("iptables: inbound port to ignore %s contains the inbound proxy port %d", r, c.InboundPort))
		}
	}
	if c.IPv6 != "" {
		if _, err := ParseIPv6Mode(string(c.IPv6)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Rules returns the Conduit rules of the family's nat table in
// iptables-restore syntax (without the table header, chain declarations and
// COMMIT): first the jumps from the built-in chains, then the two Conduit
// chains. Both families get the same rules but for the loopback network and
// the subnets to ignore, which are the family's own.
func (c Config) Rules(f Family) []string {
	var r []string
	r = append(r,
		fmt.Sprintf("-A PREROUTING -p tcp -m comment --comment \"conduit: inbound\" -j %s", InboundChain),
		fmt.Sprintf("-A OUTPUT -p tcp -m comment --comment \"conduit: outbound\" -j %s", OutboundChain),
	)

	// Inbound: everything but the skipped ports goes to the inbound proxy.
	for _, list := range multiport(mergePorts(append(append([]ports.Range{}, AlwaysSkippedInboundPorts...), c.InboundPortsToIgnore...))) {
		r = append(r, fmt.Sprintf("-A %s -p tcp -m multiport --dports %s -m comment --comment \"conduit: skip inbound ports\" -j RETURN", InboundChain, list))
	}
	r = append(r, fmt.Sprintf("-A %s -p tcp -m comment --comment \"conduit: to inbound proxy\" -j REDIRECT --to-ports %d", InboundChain, c.InboundPort))

	// Outbound.
	r = append(r,
		// The proxy's own connections (to peers, to the control plane, and
		// to the application on behalf of the inbound side) are final.
		fmt.Sprintf("-A %s -m owner --uid-owner %d -m comment --comment \"conduit: proxy's own traffic\" -j RETURN", OutboundChain, c.ProxyUID),
		// The application connecting to its own pod IP leaves through lo and
		// never crosses PREROUTING: send it through the inbound chain so it
		// reaches the inbound proxy like any other inbound connection (the
		// proxy forwards it to the application as UID 2102, so no loop).
		fmt.Sprintf("-A %s -o lo ! -d %s -m comment --comment \"conduit: own pod IP via inbound\" -j %s", OutboundChain, f.loopback(), InboundChain),
		// Loopback (127.0.0.0/8 or ::1, and the skipped inbound ports of
		// the pod IP returning from the inbound chain) stays local.
		fmt.Sprintf("-A %s -o lo -m comment --comment \"conduit: loopback\" -j RETURN", OutboundChain),
	)
	for _, list := range multiport(mergePorts(c.OutboundPortsToIgnore)) {
		r = append(r, fmt.Sprintf("-A %s -p tcp -m multiport --dports %s -m comment --comment \"conduit: skip outbound ports\" -j RETURN", OutboundChain, list))
	}
	for _, p := range mergeSubnets(c.subnets(f)) {
		r = append(r, fmt.Sprintf("-A %s -d %s -m comment --comment \"conduit: skip subnet\" -j RETURN", OutboundChain, p))
	}
	r = append(r, fmt.Sprintf("-A %s -p tcp -m comment --comment \"conduit: to outbound proxy\" -j REDIRECT --to-ports %d", OutboundChain, c.OutboundPort))
	return r
}

// subnets are the subnets to ignore of family f.
func (c Config) subnets(f Family) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range c.SubnetsToIgnore {
		if f.holds(p) {
			out = append(out, p)
		}
	}
	return out
}

// mergePorts sorts ranges and merges overlapping or adjacent ones.
func mergePorts(in []ports.Range) []ports.Range {
	if len(in) == 0 {
		return nil
	}
	s := append([]ports.Range(nil), in...)
	sort.Slice(s, func(i, j int) bool { return s[i].From < s[j].From || (s[i].From == s[j].From && s[i].To < s[j].To) })
	out := []ports.Range{s[0]}
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if uint32(r.From) <= uint32(last.To)+1 {
			if r.To > last.To {
				last.To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// multiport splits ranges into multiport argument lists of at most
// multiportMax ports each (a range counts as two).
func multiport(ranges []ports.Range) []string {
	var out, cur []string
	n := 0
	for _, r := range ranges {
		w := 1
		if r.From != r.To {
			w = 2
		}
		if n+w > multiportMax {
			out = append(out, strings.Join(cur, ","))
			cur, n = nil, 0
		}
		cur = append(cur, rulePorts(r))
		n += w
	}
	if len(cur) > 0 {
		out = append(out, strings.Join(cur, ","))
	}
	return out
}

// mergeSubnets sorts prefixes and drops those contained in another.
func mergeSubnets(in []netip.Prefix) []netip.Prefix {
	s := append([]netip.Prefix(nil), in...)
	sort.Slice(s, func(i, j int) bool {
		if s[i].Bits() != s[j].Bits() {
			return s[i].Bits() < s[j].Bits()
		}
		return s[i].Addr().Less(s[j].Addr())
	})
	var out []netip.Prefix
next:
	for _, p := range s {
		for _, q := range out {
			if q.Contains(p.Addr()) && q.Bits() <= p.Bits() {
				continue next
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out
}

var builtinNatChains = []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}

// Ruleset returns the complete iptables-restore (or ip6tables-restore)
// input for family f's nat table: the table as found in current
// (iptables-save or ip6tables-save output, possibly holding several tables
// or none), minus every Conduit chain and jump, plus the Conduit rules. The
// Conduit jumps come first in PREROUTING and OUTPUT.
func (c Config) Ruleset(f Family, current string) string {
	var decls, rules []string
	inNat := false
	for _, line := range strings.Split(current, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			inNat = line == "*nat"
		case !inNat:
		case line == "COMMIT":
			inNat = false
		case strings.HasPrefix(line, ":"):
			if !strings.HasPrefix(line, ":"+chainPrefix) {
				decls = append(decls, line)
			}
		case strings.HasPrefix(line, "-A "):
			if !ownedRule(line) {
				rules = append(rules, line)
			}
		}
	}
	have := map[string]bool{}
	for _, d := range decls {
		have[strings.Fields(d)[0][1:]] = true
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, ch := range builtinNatChains {
		if !have[ch] {
			fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", ch)
		}
	}
	for _, d := range decls {
		b.WriteString(d + "\n")
	}
	fmt.Fprintf(&b, ":%s - [0:0]\n:%s - [0:0]\n", InboundChain, OutboundChain)
	for _, r := range c.Rules(f) {
		b.WriteString(r + "\n")
	}
	for _, r := range rules {
		b.WriteString(r + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// ownedRule reports whether an iptables-save rule lives in or jumps to a
// Conduit chain.
func ownedRule(line string) bool {
	f := strings.Fields(line)
	if len(f) >= 2 && strings.HasPrefix(f[1], chainPrefix) {
		return true
	}
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && strings.HasPrefix(f[i+1], chainPrefix) {
			return true
		}
	}
	return false
}
