// Package iptables builds and installs the nat rules that route a meshed
// pod's TCP traffic through its Conduit proxy: inbound connections
// (PREROUTING) are redirected to the proxy's inbound port, outbound
// connections (OUTPUT) to its outbound port, except the proxy's own traffic
// (matched by UID), loopback traffic, and the ports and subnets the user
// asked to skip.
//
// The rules are generated as an iptables-restore ruleset for the nat table:
// the current table is read with iptables-save, every Conduit chain and jump
// is removed from it, the Conduit rules are added, and the result is
// restored atomically. Running it again therefore rebuilds the Conduit
// chains and leaves every other rule as it was. Both the legacy and the
// nf_tables backends of iptables are supported.
//
// Each IP family has its own nat table: the same rules are built for IPv4
// (iptables) and IPv6 (ip6tables), which differ only in the loopback network
// (127.0.0.0/8, ::1) and in the subnets to ignore (each family gets its
// own). Both use the backend detected once. IPv6 is programmed when the
// network namespace has it (see IPv6Mode); otherwise the IPv4 rules alone
// are installed and the reason is logged.
package iptables
