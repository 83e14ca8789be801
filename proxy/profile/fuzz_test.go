package profile

import (
	"net/http/httptest"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
)

// FuzzCompile: a profile from the control plane, whatever its bytes, is
// compiled or refused with an error, never a panic; a compiled one matches
// requests, classifies statuses, splits only to its own authorities and
// spends its retry budget without panicking either.
func FuzzCompile(f *testing.F) {
	seeds := []*destinationv1.DestinationProfile{testProfile(), {}}
	deep := method("GET")
	for range maxDepth + 2 {
		deep = &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_Not{Not: deep}}
	}
	seeds = append(seeds, &destinationv1.DestinationProfile{Routes: []*destinationv1.Route{{Condition: deep}}})
	for _, p := range seeds {
		b, err := proto.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	reqs := []struct{ method, target string }{{"GET", "/books/1"}, {"POST", "/"}, {"DELETE", "/x%2Fy?q=1"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var wire destinationv1.DestinationProfile
		if proto.Unmarshal(b, &wire) != nil {
			return
		}
		p, err := Compile(&wire)
		if err != nil {
			if p != nil {
				t.Fatalf("Compile returned a profile and the error %v", err)
			}
			return
		}
		for _, r := range reqs {
			if rt := p.Match(httptest.NewRequest(r.method, r.target, nil)); rt != nil {
				for _, s := range []int{100, 200, 404, 500, 599, 999} {
					rt.IsFailure(s)
				}
			}
		}
		for range 4 {
			a := p.PickSplit()
			if a == "" && len(p.Split) > 0 || a != "" && !slices.ContainsFunc(p.Split, func(d WeightedDst) bool { return d.Authority == a }) {
				t.Fatalf("PickSplit() = %q, not one of %v", a, p.Split)
			}
		}
		if p.Budget != nil {
			p.Budget.Deposit()
			p.Budget.Withdraw()
		}
	})
}
