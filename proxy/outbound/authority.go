package outbound

import (
	"strconv"
	"strings"
)

// Normalize turns a Host/:authority into the destination API name
// "name.ns.svc.<domain>:port". Short names ("web", "web.ns", "web.ns.svc")
// are qualified with ns and domain; a missing port is 80. ok is false for IP
// literals and names outside <domain>'s svc zone.
func Normalize(host, ns, domain string) (name string, ok bool) {
	h, port, explicit := host, "80", false
	if strings.HasPrefix(host, "[") {
		return "", false
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		h, port, explicit = host[:i], host[i+1:], true
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return "", false
		}
	}
	trimmed := strings.TrimSuffix(h, ".")
	if trimmed == "" || !validName(trimmed) {
		return "", false
	}
	if numeric(trimmed) {
		return "", false // an IPv4 literal (IPv6 ones never pass validName)
	}
	lower := trimmed
	for i := 0; i < len(trimmed); i++ {
		if c := trimmed[i]; c >= 'A' && c <= 'Z' {
			lower = strings.ToLower(trimmed)
			break
		}
	}
	dots := strings.Count(lower, ".")
	switch {
	case dots == 0:
		if ns == "" {
			return "", false
		}
		return lower + "." + ns + ".svc." + domain + ":" + port, true
	case dots == 1:
		return lower + ".svc." + domain + ":" + port, true
	case dots == 2 && strings.HasSuffix(lower, ".svc"):
		return lower + "." + domain + ":" + port, true
	case strings.HasSuffix(lower, ".svc."+domain) && dots == 3+strings.Count(domain, "."):
		if explicit && lower == h {
			return host, true // already canonical: no allocation
		}
		return lower + ":" + port, true
	}
	return "", false
}

func numeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// validName accepts DNS characters only: letters, digits, '-' and '.', with no empty label.
func validName(s string) bool {
	prev := byte('.')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		case c == '.':
			if prev == '.' {
				return false
			}
		default:
			return false
		}
		prev = c
	}
	return prev != '.'
}
