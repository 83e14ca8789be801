package destination

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// target is a parsed authority.
type target struct {
	// ip is set for "ip:port" authorities.
	ip netip.Addr
	// ns/name of the Service for DNS authorities; known is false for a
	// well-formed name outside the cluster domain.
	ns, name string
	// hostname selects one pod of a headless Service ("web-0.web.ns.svc...").
	hostname string
	port     uint32
	known    bool
	// family is the address family ("IPv4", "IPv6") a Service target
	// resolves to when it is not the Service's primary one: set when a
	// client asked for the Service's cluster IP of its other family.
	family string
}

func (t target) id() string {
	if t.ip.IsValid() {
		return net.JoinHostPort(t.ip.String(), strconv.Itoa(int(t.port)))
	}
	id := fmt.Sprintf("%s.%s.%s:%d", t.hostname, t.name, t.ns, t.port)
	if t.family != "" {
		id += "/" + t.family
	}
	return id
}

// parseAuthority parses "name.ns.svc.<domain>[:port]",
// "host.name.ns.svc.<domain>[:port]" or "ip:port". The port defaults to 80 for
// names. An error means the authority is malformed; a well-formed name outside
// the cluster domain parses with known=false.
func parseAuthority(auth, clusterDomain string) (target, error) {
	var t target
	if auth == "" {
		return t, fmt.Errorf("empty authority")
	}
	// An IP address needs a port ("10.0.0.1:80", "[fd00::1]:80"), and an
	// IPv6 address brackets: "fd00::1:80" could be either. Only an IPv6
	// address has more than one colon.
	if strings.Count(auth, ":") > 1 && !strings.HasPrefix(auth, "[") {
		return t, fmt.Errorf("authority %q: an IPv6 address must be in brackets, with a port: [fd00::1]:8080", auth)
	}
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(auth, "["), "]")); err == nil {
		return t, fmt.Errorf("authority %q: an IP address needs a port, e.g. %s", auth, net.JoinHostPort(ip.String(), "80"))
	}
	host, portStr, err := net.SplitHostPort(auth)
	if err != nil {
		var aerr *net.AddrError
		switch {
		case errors.As(err, &aerr) && aerr.Err == "missing port in address":
			host, portStr = auth, "80" // a bare name
		default:
			return t, fmt.Errorf("authority %q: %w", auth, err)
		}
	}
	p, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || p == 0 {
		return t, fmt.Errorf("authority %q: port %q is not a number in 1-65535", auth, portStr)
	}
	t.port = uint32(p)
	if ip, err := netip.ParseAddr(host); err == nil {
		t.ip = ip.Unmap()
		t.known = true
		return t, nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if errs := validation.IsDNS1123Subdomain(host); len(errs) > 0 {
		return t, fmt.Errorf("authority %q: host is neither an IP nor a DNS name: %s", auth, strings.Join(errs, "; "))
	}
	suffix := ".svc." + strings.Trim(strings.ToLower(clusterDomain), ".")
	if !strings.HasSuffix(host, suffix) {
		return t, nil // outside the cluster domain: unknown
	}
	labels := strings.Split(strings.TrimSuffix(host, suffix), ".")
	switch len(labels) {
	case 2:
		t.name, t.ns = labels[0], labels[1]
	case 3:
		t.hostname, t.name, t.ns = labels[0], labels[1], labels[2]
	default:
		return t, fmt.Errorf("authority %q: expected <service>.<namespace>%s or <pod>.<service>.<namespace>%s", auth, suffix, suffix)
	}
	for _, l := range labels {
		if errs := validation.IsDNS1123Label(l); len(errs) > 0 {
			return t, fmt.Errorf("authority %q: label %q: %s", auth, l, strings.Join(errs, "; "))
		}
	}
	t.known = true
	return t, nil
}
