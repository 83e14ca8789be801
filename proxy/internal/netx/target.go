package netx

import "net/url"

// ParseTarget is url.ParseRequestURI into u, made in place, and without
// parsing when the target is a plain origin-form one: a path of letters,
// digits and "-._~/" (which need neither unescaping nor a RawPath), and
// a non-empty query of printable characters, if any. Other targets go
// through url.ParseRequestURI.
func ParseTarget(target string, u *url.URL) error {
	if path, query, ok := plainTarget(target); ok {
		*u = url.URL{Path: path, RawQuery: query}
		return nil
	}
	p, err := url.ParseRequestURI(target)
	if err != nil {
		return err
	}
	*u = *p
	return nil
}

// plainTarget splits a plain target (see ParseTarget) into its path and
// query.
func plainTarget(t string) (path, query string, ok bool) {
	if t == "" || t[0] != '/' {
		return "", "", false
	}
	for i := 1; i < len(t); i++ {
		switch c := t[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/':
		case c == '?':
			query = t[i+1:]
			if query == "" {
				return "", "", false // a ForceQuery URL
			}
			for j := 0; j < len(query); j++ {
				if query[j] <= ' ' || query[j] >= 0x7f {
					return "", "", false
				}
			}
			return t[:i], query, true
		default:
			return "", "", false
		}
	}
	return t, "", true
}
