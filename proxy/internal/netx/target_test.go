package netx

import (
	"math/rand/v2"
	"net/url"
	"testing"
)

// TestParseTarget: ParseTarget makes the URL url.ParseRequestURI makes, and
// fails where it fails, for plain targets and others.
func TestParseTarget(t *testing.T) {
	targets := []string{
		"/", "/echo", "/a/b/c", "//x", "///", "/pkg.Service/Method", "/a-b_c.d~e", "/x?y=1&z=2", "/x?", "/x??",
		"/x?a?b", "/x?q#frag", "/x#frag", "/a%20b", "/a%2Fb", "/a%zz", "/a b", "/a!b", "/a*b(c)", "/a:b@c;d=e,f$g&h+i",
		"/ü", "/x?a b", "/x?\x01", "/\x7f", "*", "", "x", "http://h/p", "/x?%zz", "/[v]", "/x?y=%20",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "/?aZ09-._~%2F!*:@# \x01"
	for range 5000 {
		b := make([]byte, 1+rng.IntN(8))
		b[0] = '/'
		for i := 1; i < len(b); i++ {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		targets = append(targets, string(b))
	}
	for _, tg := range targets {
		want, werr := url.ParseRequestURI(tg)
		var got url.URL
		err := ParseTarget(tg, &got)
		if (err != nil) != (werr != nil) {
			t.Errorf("%q: err %v, url.ParseRequestURI's %v", tg, err, werr)
			continue
		}
		if err == nil && got != *want {
			t.Errorf("%q: %#v, url.ParseRequestURI's %#v", tg, got, *want)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		var u url.URL
		_ = ParseTarget("/pkg.Service/Method?x=1", &u)
	}); n != 0 {
		t.Errorf("a plain target: %v allocations, want 0", n)
	}
}
