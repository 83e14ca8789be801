package netx

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"reflect"
	"testing"
)

// TestParseTarget: ParseTarget makes the URL url.ParseRequestURI makes, and
// fails where it fails, for plain targets and others.
func TestParseTarget(t *testing.T) {
	targets := append([]string(nil), targetSeeds...)
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
		if err := sameAsParseRequestURI(tg); err != nil {
			t.Error(err)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		var u url.URL
		_ = ParseTarget("/pkg.Service/Method?x=1", &u)
	}); n != 0 {
		t.Errorf("a plain target: %v allocations, want 0", n)
	}
}

// targetSeeds are plain targets and others, for TestParseTarget and
// FuzzParseTarget.
var targetSeeds = []string{
	"/", "/echo", "/a/b/c", "//x", "///", "/pkg.Service/Method", "/a-b_c.d~e", "/x?y=1&z=2", "/x?", "/x??",
	"/x?a?b", "/x?q#frag", "/x#frag", "/a%20b", "/a%2Fb", "/a%zz", "/a b", "/a!b", "/a*b(c)", "/a:b@c;d=e,f$g&h+i",
	"/ü", "/x?a b", "/x?\x01", "/\x7f", "*", "", "x", "http://h/p", "/x?%zz", "/[v]", "/x?y=%20",
}

// sameAsParseRequestURI says how ParseTarget's answer for target differs
// from url.ParseRequestURI's, if it does.
func sameAsParseRequestURI(target string) error {
	want, werr := url.ParseRequestURI(target)
	var got url.URL
	err := ParseTarget(target, &got)
	if (err != nil) != (werr != nil) {
		return fmt.Errorf("%q: err %v, url.ParseRequestURI's %v", target, err, werr)
	}
	if err == nil && !reflect.DeepEqual(got, *want) { // User is a pointer
		return fmt.Errorf("%q: %#v, url.ParseRequestURI's %#v", target, got, *want)
	}
	return nil
}

// FuzzParseTarget: for any target, ParseTarget makes the URL
// url.ParseRequestURI makes, or fails where it fails.
func FuzzParseTarget(f *testing.F) {
	for _, s := range targetSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if err := sameAsParseRequestURI(target); err != nil {
			t.Error(err)
		}
	})
}
