package outbound

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Normalize turns a Host/:authority into the destination API name
// "name.ns.svc.<domain>:port". Short names ("web", "web.ns", "web.ns.svc")
// are qualified with ns and domain; a missing port is 80. ok is false for IP
// literals and names outside <domain>'s svc zone.
func Normalize(host, ns, domain string) (name string, ok bool) {
	h, port := host, "80"
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		h, port = host[:i], host[i+1:]
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return "", false
		}
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || strings.HasPrefix(h, "[") {
		return "", false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return "", false
	}
	h = strings.ToLower(h)
	dots := strings.Count(h, ".")
	switch {
	case dots == 0:
		if ns == "" {
			return "", false
		}
		return h + "." + ns + ".svc." + domain + ":" + port, true
	case dots == 1:
		return h + ".svc." + domain + ":" + port, true
	case dots == 2 && strings.HasSuffix(h, ".svc"):
		return h + "." + domain + ":" + port, true
	case strings.HasSuffix(h, ".svc."+domain) && dots == 3+strings.Count(domain, "."):
		return net.JoinHostPort(h, port), true
	}
	return "", false
}
