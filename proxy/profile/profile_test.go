package profile

import (
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
)

func method(m string) *destinationv1.RequestMatch {
	return &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_Method{Method: m}}
}

func path(re string) *destinationv1.RequestMatch {
	return &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_Path{Path: &destinationv1.PathMatch{Regex: re}}}
}

func all(ms ...*destinationv1.RequestMatch) *destinationv1.RequestMatch {
	return &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_All{All: &destinationv1.RequestMatch_Seq{Matches: ms}}}
}

func status(lo, hi uint32) *destinationv1.ResponseMatch {
	return &destinationv1.ResponseMatch{Match: &destinationv1.ResponseMatch_Status{Status: &destinationv1.HttpStatusRange{Min: lo, Max: hi}}}
}

func testProfile() *destinationv1.DestinationProfile {
	return &destinationv1.DestinationProfile{
		FullyQualifiedName: "web.ns.svc.cluster.local",
		Routes: []*destinationv1.Route{
			{Condition: all(method("GET"), path("/books/[0-9]+")), MetricsLabels: map[string]string{"route": "GET /books/{id}"},
				IsRetryable: true, Timeout: durationpb.New(250 * time.Millisecond),
				ResponseClasses: []*destinationv1.ResponseClass{{Condition: status(500, 503), IsFailure: true}, {Condition: status(504, 504), IsFailure: false}}},
			{Condition: &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_Not{Not: method("GET")}}, MetricsLabels: map[string]string{"route": "writes"},
				ResponseClasses: []*destinationv1.ResponseClass{{Condition: status(400, 499), IsFailure: true}}},
		},
		RetryBudget:  &destinationv1.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 1, Ttl: durationpb.New(time.Second)},
		DstOverrides: []*destinationv1.WeightedDst{{Authority: "a:80", Weight: 900}, {Authority: "b:80", Weight: 100}, {Authority: "c:80", Weight: 0}},
	}
}

func TestRoutes(t *testing.T) {
	p, err := Compile(testProfile())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, url string
		want        string
	}{
		{"GET", "/books/12", "GET /books/{id}"},
		{"GET", "/books/12/x", ""}, // anchored regex
		{"GET", "/books/abc", ""},
		{"POST", "/books/12", "writes"},
		{"DELETE", "/anything", "writes"},
	}
	for _, tt := range tests {
		r := p.Match(httptest.NewRequest(tt.method, tt.url, nil))
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tt.want {
			t.Errorf("%s %s: route %q, want %q", tt.method, tt.url, got, tt.want)
		}
	}
	get := p.Match(httptest.NewRequest("GET", "/books/1", nil))
	if !get.Retryable || get.Timeout != 250*time.Millisecond {
		t.Errorf("route settings: %+v", get)
	}
	writes := p.Match(httptest.NewRequest("POST", "/", nil))
	classes := []struct {
		rt     *Route
		status int
		fail   bool
	}{
		{get, 500, true}, {get, 504, false}, {get, 505, true /* default */}, {get, 200, false},
		{writes, 404, true}, {writes, 500, true}, {nil, 503, true}, {nil, 404, false},
	}
	for _, c := range classes {
		if got := IsFailure(c.rt, c.status); got != c.fail {
			name := "<nil>"
			if c.rt != nil {
				name = c.rt.Name
			}
			t.Errorf("IsFailure(%s, %d) = %v, want %v", name, c.status, got, c.fail)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	bad := &destinationv1.DestinationProfile{Routes: []*destinationv1.Route{{Condition: path("(")}}}
	if _, err := Compile(bad); err == nil {
		t.Error("bad regex accepted")
	}
	empty := &destinationv1.DestinationProfile{Routes: []*destinationv1.Route{{Condition: &destinationv1.RequestMatch{}}}}
	if _, err := Compile(empty); err == nil {
		t.Error("empty match accepted")
	}
}

func TestSplit(t *testing.T) {
	p, err := Compile(testProfile())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Split) != 2 {
		t.Fatalf("zero-weight backend kept: %v", p.Split)
	}
	counts := map[string]int{}
	for i := 0; i < 10000; i++ {
		counts[p.PickSplit()]++
	}
	if counts["a:80"] < 8700 || counts["a:80"] > 9300 || counts["b:80"] < 700 || counts["c:80"] != 0 {
		t.Errorf("split 90/10 gave %v", counts)
	}
	if (&Profile{}).PickSplit() != "" || (*Profile)(nil).PickSplit() != "" {
		t.Error("no split must pick nothing")
	}
	if got := pickWeighted([]WeightedDst{{"x", 1}, {"y", 3}}, 4, 1); got != "y" {
		t.Errorf("pickWeighted = %q", got)
	}
}

func TestBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBudget(0.2, 1, time.Second)
	b.now = func() time.Time { return now }
	b.headAt = now
	// Floor: min 1/s × 1s TTL = 1 retry with no traffic.
	if !b.Withdraw() {
		t.Fatal("first retry refused")
	}
	if b.Withdraw() {
		t.Fatal("second retry allowed without deposits")
	}
	// 20 requests at ratio 0.2 allow 4 more.
	for i := 0; i < 20; i++ {
		b.Deposit()
	}
	allowed := 0
	for i := 0; i < 10; i++ {
		if b.Withdraw() {
			allowed++
		}
	}
	if allowed != 4 {
		t.Errorf("allowed %d retries after 20 requests, want 4", allowed)
	}
	// After the TTL everything expires: back to the floor.
	now = now.Add(1100 * time.Millisecond)
	if !b.Withdraw() || b.Withdraw() {
		t.Error("budget did not reset to its floor after the TTL")
	}
	// Clamping.
	if nb := NewBudget(5000, 0, 0); nb.ratio != 1000 || nb.ttl != 10*time.Second {
		t.Errorf("clamp: ratio %v ttl %v", nb.ratio, nb.ttl)
	}
}

// A retry budget from the control plane with a value no budget can use
// (NaN, negative, zero) must never allow unlimited retries.
func TestBudgetBadValues(t *testing.T) {
	tests := []struct {
		name    string
		ratio   float64
		minPS   int
		ttl     time.Duration
		allowed int // retries allowed after 10 requests
	}{
		{"NaN ratio", math.NaN(), 1, time.Second, 1},
		{"negative ratio", -1, 1, time.Second, 1},
		{"+Inf ratio clamped to 1000", math.Inf(1), 0, time.Second, 10000},
		{"zero everything", 0, 0, 0, 0},
		{"negative ttl defaults", 0, 1, -time.Second, 10},
		{"negative min per second is 0", 1, -5, time.Second, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			b := NewBudget(tt.ratio, tt.minPS, tt.ttl)
			b.now = func() time.Time { return now }
			b.headAt = now
			for i := 0; i < 10; i++ {
				b.Deposit()
			}
			got := 0
			for i := 0; i < 20000 && b.Withdraw(); i++ {
				got++
			}
			if got != tt.allowed {
				t.Errorf("allowed %d retries, want %d", got, tt.allowed)
			}
		})
	}
}

func TestCompileRejectsNaNRetryRatio(t *testing.T) {
	p := testProfile()
	p.RetryBudget.RetryRatio = float32(math.NaN())
	if _, err := Compile(p); err == nil {
		t.Error("NaN retry ratio accepted")
	}
}
