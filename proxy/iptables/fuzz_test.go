package iptables

import (
	"strings"
	"testing"
)

// FuzzRuleset feeds arbitrary iptables-save output to Ruleset, for either
// family: whatever it holds, the result is one nat table with the Conduit
// rules first in PREROUTING and OUTPUT, and rebuilding over it changes
// nothing, as proxy-init run twice (a restarted pod) must not.
func FuzzRuleset(f *testing.F) {
	f.Add("", false)
	f.Add("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-X - [0:0]\n-A PREROUTING -j KUBE-X\n:CONDUIT_INBOUND - [0:0]\n-A CONDUIT_INBOUND -j RETURN\nCOMMIT\n", false)
	f.Add("*nat\n:\n-A \n-A OUTPUT -g CONDUIT_OUTBOUND\n# comment\r\n*nat\n", true)
	f.Add("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d fd00::/8 -j RETURN\nCOMMIT\n", true)
	f.Add("*nat\n-A -d fd00::/8 0", false)
	c := defaults()
	c.OutboundPortsToIgnore = mustPorts(f, "443,8000-8100")
	c.SubnetsToIgnore, _ = ParseSubnets("10.0.0.0/8,fd00::/8")
	f.Fuzz(func(t *testing.T, current string, v6 bool) {
		fam := IPv4
		if v6 {
			fam = IPv6
		}
		got := c.Ruleset(fam, current)
		lines := strings.Split(got, "\n")
		tables, commits := 0, 0
		for _, l := range lines {
			switch {
			case strings.HasPrefix(l, "*"):
				tables++
			case l == "COMMIT":
				commits++
			}
		}
		if !strings.HasPrefix(got, "*nat\n") || !strings.HasSuffix(got, "\nCOMMIT\n") || tables != 1 || commits != 1 {
			t.Fatalf("not one nat table:\n%s", got)
		}
		ours := c.Rules(fam)
		first := map[string]string{}
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "-A" && first[f[1]] == "" {
				first[f[1]] = l
			}
		}
		if first["PREROUTING"] != ours[0] || first["OUTPUT"] != ours[1] {
			t.Fatalf("the Conduit jumps are not first:\n%s", got)
		}
		// Each family's Conduit rules skip its own subnets only (foreign
		// rules are kept whatever they say).
		var conduit []string
		for _, l := range lines {
			if strings.HasPrefix(l, "-A "+OutboundChain+" ") {
				conduit = append(conduit, l)
			}
		}
		for _, p := range c.SubnetsToIgnore {
			if in := strings.Contains(strings.Join(conduit, "\n"), "-d "+p.String()+" "); in != fam.holds(p) {
				t.Fatalf("%s ruleset: subnet %s skipped = %v:\n%s", fam, p, in, got)
			}
		}
		if again := c.Ruleset(fam, got); again != got {
			t.Fatalf("rebuilding changed the ruleset:\n%s\nvs\n%s", got, again)
		}
	})
}
