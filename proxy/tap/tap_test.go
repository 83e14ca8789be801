package tap

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
)

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func outReq(path string) Request {
	return Request{Direction: tapv1.Direction_OUTBOUND, Source: "10.0.0.1:40000", Destination: "10.0.0.2:8080",
		TLS: true, ServerID: "web.ns.serviceaccount.identity.conduit.cluster.local",
		DestinationLabels: map[string]string{"namespace": "ns", "deployment": "web"}, Route: "GET /api",
		Method: "GET", Scheme: "http", Authority: "web.ns.svc.cluster.local:80", Path: path}
}

func inReq(path string) Request {
	return Request{Direction: tapv1.Direction_INBOUND, Source: "10.0.0.1:40000", Destination: "10.0.0.2:8080",
		TLS: true, ClientID: "client.ns.serviceaccount.identity.conduit.cluster.local",
		Method: "POST", Scheme: "http", Authority: "web.ns.svc.cluster.local", Path: path}
}

// observe registers an observer directly (no gRPC), as Observe does.
func observe(t *testing.T, h *Hub, req *tapv1.ObserveRequest) *observer {
	t.Helper()
	o, err := h.newObserver(req)
	if err != nil {
		t.Fatal(err)
	}
	h.add(o, 0)
	return o
}

// queued drains the observer's queue without blocking.
func queued(o *observer) []event {
	var out []event
	for {
		select {
		case e := <-o.events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name  string
		match *tapv1.Match
		req   Request
		want  bool
	}{
		{"empty matches all", &tapv1.Match{}, inReq("/x"), true},
		{"nil match matches all", nil, outReq("/x"), true},
		{"direction", &tapv1.Match{Direction: tapv1.Direction_INBOUND}, inReq("/x"), true},
		{"other direction", &tapv1.Match{Direction: tapv1.Direction_INBOUND}, outReq("/x"), false},
		{"method", &tapv1.Match{Method: "POST"}, inReq("/x"), true},
		{"method is exact", &tapv1.Match{Method: "post"}, inReq("/x"), false},
		{"path prefix", &tapv1.Match{PathPrefix: "/api/"}, outReq("/api/v1"), true},
		{"path prefix miss", &tapv1.Match{PathPrefix: "/api/"}, outReq("/apix"), false},
		{"authority", &tapv1.Match{Authority: "web.ns.svc.cluster.local:80"}, outReq("/"), true},
		{"authority is exact", &tapv1.Match{Authority: "web.ns.svc.cluster.local"}, outReq("/"), false},
		{"labels", &tapv1.Match{DestinationLabels: map[string]string{"namespace": "ns", "deployment": "web"}}, outReq("/"), true},
		{"labels subset", &tapv1.Match{DestinationLabels: map[string]string{"deployment": "web"}}, outReq("/"), true},
		{"label differs", &tapv1.Match{DestinationLabels: map[string]string{"deployment": "emoji"}}, outReq("/"), false},
		{"label missing", &tapv1.Match{DestinationLabels: map[string]string{"pod": ""}}, outReq("/"), false},
		{"labels never match inbound", &tapv1.Match{DestinationLabels: map[string]string{"namespace": "ns"}}, inReq("/"), false},
		{"all fields", &tapv1.Match{Direction: tapv1.Direction_OUTBOUND, Method: "GET", PathPrefix: "/a",
			Authority: "web.ns.svc.cluster.local:80", DestinationLabels: map[string]string{"namespace": "ns"}}, outReq("/a/b"), true},
		{"all fields but one", &tapv1.Match{Direction: tapv1.Direction_OUTBOUND, Method: "PUT", PathPrefix: "/a",
			Authority: "web.ns.svc.cluster.local:80", DestinationLabels: map[string]string{"namespace": "ns"}}, outReq("/a/b"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHub(Options{})
			observe(t, h, &tapv1.ObserveRequest{Match: tt.match})
			tp := h.Start(tt.req)
			if got := tp != nil; got != tt.want {
				t.Errorf("tapped = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestInvalidRequest(t *testing.T) {
	h := NewHub(Options{})
	for _, req := range []*tapv1.ObserveRequest{
		{Match: &tapv1.Match{Direction: tapv1.Direction(7)}},
		{Match: &tapv1.Match{Direction: tapv1.Direction_INBOUND, DestinationLabels: map[string]string{"a": "b"}}},
	} {
		if _, err := h.newObserver(req); err == nil {
			t.Errorf("%v accepted", req)
		}
	}
}

func TestRateLimit(t *testing.T) {
	tests := []struct {
		name   string
		maxRPS uint32
		steps  []struct {
			advance  time.Duration
			requests int
			want     int
		}
	}{
		{name: "5 per second", maxRPS: 5, steps: []struct {
			advance  time.Duration
			requests int
			want     int
		}{
			{0, 10, 5},                      // the burst is max_rps, the rest is skipped
			{200 * time.Millisecond, 3, 1},  // refilled at 5/s
			{10 * time.Second, 20, 5},       // never more than max_rps saved up
			{100 * time.Millisecond, 10, 0}, // half a token
			{100 * time.Millisecond, 10, 1},
		}},
		{name: "0 means 100", maxRPS: 0, steps: []struct {
			advance  time.Duration
			requests int
			want     int
		}{
			{0, 150, 100},
			{time.Second, 150, 100},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			h := NewHub(Options{Now: c.Now, QueueSize: 10000})
			observe(t, h, &tapv1.ObserveRequest{MaxRps: tt.maxRPS})
			for i, s := range tt.steps {
				c.Add(s.advance)
				got := 0
				for range s.requests {
					if tp := h.Start(inReq("/")); tp != nil {
						got++
						tp.End(0, "", false, nil)
					}
				}
				if got != s.want {
					t.Errorf("step %d: %d tapped, want %d", i, got, s.want)
				}
			}
		})
	}
}

func TestEventsOrderAndStreamIDs(t *testing.T) {
	c := newClock()
	h := NewHub(Options{Now: c.Now})
	all := observe(t, h, &tapv1.ObserveRequest{})
	api := observe(t, h, &tapv1.ObserveRequest{Match: &tapv1.Match{PathPrefix: "/api"}})

	a := h.Start(outReq("/api/1")) // both observers
	b := h.Start(outReq("/web"))   // only all
	c.Add(10 * time.Millisecond)
	b.Response(200)
	a.Response(503)
	c.Add(5 * time.Millisecond)
	a.End(42, "14", true, nil)
	b.End(7, "", false, errors.New("stream reset"))
	b.End(1, "", false, nil) // only the first End counts
	b.Response(200)          // nothing after End

	type ev struct {
		kind kind
		id   uint64
	}
	summary := func(es []event) []ev {
		var out []ev
		for _, e := range es {
			out = append(out, ev{e.kind, e.id})
		}
		return out
	}
	gotAll := queued(all)
	wantAll := []ev{{kindRequestInit, 1}, {kindRequestInit, 2}, {kindResponseInit, 2}, {kindResponseInit, 1}, {kindResponseEnd, 1}, {kindResponseEnd, 2}}
	if s := summary(gotAll); !equal(s, wantAll) {
		t.Errorf("observer all: %v, want %v", s, wantAll)
	}
	// Stream ids are per observer: the second observer's first request is 1.
	gotAPI := queued(api)
	wantAPI := []ev{{kindRequestInit, 1}, {kindResponseInit, 1}, {kindResponseEnd, 1}}
	if s := summary(gotAPI); !equal(s, wantAPI) {
		t.Errorf("observer api: %v, want %v", s, wantAPI)
	}

	// The protobuf events carry the request's fields.
	init := gotAPI[0].proto()
	ri := init.GetRequestInit()
	if init.GetDirection() != tapv1.Direction_OUTBOUND || init.GetSource() != "10.0.0.1:40000" || init.GetDestination() != "10.0.0.2:8080" ||
		!init.GetTls() || init.GetServerId() != "web.ns.serviceaccount.identity.conduit.cluster.local" || init.GetRoute() != "GET /api" ||
		init.GetDestinationLabels()["deployment"] != "web" || init.GetStreamId() != 1 {
		t.Errorf("request_init envelope: %v", init)
	}
	if ri.GetMethod() != "GET" || ri.GetPath() != "/api/1" || ri.GetAuthority() != "web.ns.svc.cluster.local:80" || ri.GetScheme() != "http" ||
		!ri.GetAt().AsTime().Equal(time.Unix(1_700_000_000, 0)) {
		t.Errorf("request_init: %v", ri)
	}
	if r := gotAPI[1].proto().GetResponseInit(); r.GetHttpStatus() != 503 || r.GetSinceRequestInit().AsDuration() != 10*time.Millisecond {
		t.Errorf("response_init: %v", r)
	}
	end := gotAPI[2].proto().GetResponseEnd()
	if end.GetResponseBytes() != 42 || end.GrpcStatus == nil || end.GetGrpcStatus() != 14 || !end.GetFailure() || end.GetError() != "" ||
		end.GetSinceRequestInit().AsDuration() != 15*time.Millisecond {
		t.Errorf("response_end: %v", end)
	}
	endB := gotAll[5].proto().GetResponseEnd()
	if endB.GetResponseBytes() != 7 || endB.GrpcStatus != nil || !endB.GetFailure() || endB.GetError() != "stream reset" {
		t.Errorf("failed response_end: %v", endB)
	}

	// Fail: no response_init, an error, a failure.
	f := h.Start(inReq("/api/x"))
	f.Fail(errors.New("connection refused"))
	got := queued(api)
	if len(got) != 2 || got[0].kind != kindRequestInit || got[1].kind != kindResponseEnd || got[1].id != 2 {
		t.Fatalf("failed request events: %v", summary(got))
	}
	if e := got[1].proto().GetResponseEnd(); e.GetError() != "connection refused" || !e.GetFailure() {
		t.Errorf("failed request end: %v", e)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBoundedQueueDrops(t *testing.T) {
	h := NewHub(Options{QueueSize: 4})
	slow := observe(t, h, &tapv1.ObserveRequest{})
	fast := observe(t, h, &tapv1.ObserveRequest{})
	// Nobody reads slow: the data path must not block and must drop.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 3 {
			tp := h.Start(inReq("/"))
			tp.Response(200)
			tp.End(uint64(i), "", false, nil)
			queued(fast) // fast keeps up
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the data path blocked on a full observer")
	}
	got := queued(slow)
	// Request 1 fits (3 events), request 2's request_init fits; its other
	// two events are dropped; request 3's request_init is dropped, and then
	// nothing more of it is sent (no orphan response events).
	var ids []uint64
	var kinds []kind
	for _, e := range got {
		ids = append(ids, e.id)
		kinds = append(kinds, e.kind)
	}
	if !equal(ids, []uint64{1, 1, 1, 2}) || !equal(kinds, []kind{kindRequestInit, kindResponseInit, kindResponseEnd, kindRequestInit}) {
		t.Errorf("queued ids %v kinds %v", ids, kinds)
	}
	if d := slow.dropped.Load(); d != 3 {
		t.Errorf("dropped %d events, want 3", d)
	}
	if d := fast.dropped.Load(); d != 0 {
		t.Errorf("the fast observer lost %d events", d)
	}
}

func TestNoObserverFastPath(t *testing.T) {
	h := NewHub(Options{})
	var nilHub *Hub
	req := outReq("/api")
	run := func(h *Hub) func() {
		return func() {
			tp := h.Start(req)
			tp.Response(200)
			tp.End(10, "", false, nil)
		}
	}
	if a := testing.AllocsPerRun(1000, run(h)); a != 0 {
		t.Errorf("no observer: %v allocs per request", a)
	}
	guarded := func() {
		var tp *Tap
		if h.Observing() {
			tp = h.Start(req)
		}
		tp.Response(200)
		tp.End(10, "", false, nil)
	}
	if a := testing.AllocsPerRun(1000, guarded); a != 0 {
		t.Errorf("guarded data path: %v allocs per request", a)
	}
	if a := testing.AllocsPerRun(1000, run(nilHub)); a != 0 {
		t.Errorf("nil hub: %v allocs per request", a)
	}
	// After an observer left, the hub is back on the fast path.
	o := observe(t, h, &tapv1.ObserveRequest{})
	if !h.Observing() || h.Start(req) == nil {
		t.Fatal("observer not seen")
	}
	h.remove(o)
	if h.Observing() || h.Observers() != 0 || h.obs.Load() != nil {
		t.Fatal("observer still registered")
	}
	if a := testing.AllocsPerRun(1000, run(h)); a != 0 {
		t.Errorf("after the observer left: %v allocs per request", a)
	}
}

// TestObserversJoinAndLeave runs the data path while observers come and
// go: every request an observer took yields request_init first and
// response_end last (never an event without its request_init), and
// requests in flight when it left are harmless.
func TestObserversJoinAndLeave(t *testing.T) {
	h := NewHub(Options{QueueSize: 1 << 12})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var requests atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tp := h.Start(outReq("/"))
				tp.Response(200)
				tp.End(1, "0", false, nil)
				requests.Add(1)
			}
		}()
	}
	for range 20 {
		o := observe(t, h, &tapv1.ObserveRequest{MaxRps: 1_000_000})
		time.Sleep(time.Millisecond)
		h.remove(o)
		state := map[uint64]kind{}
		for _, e := range queued(o) {
			prev := state[e.id]
			switch e.kind {
			case kindRequestInit:
				if prev != 0 {
					t.Fatalf("stream %d: second request_init", e.id)
				}
			case kindResponseInit:
				if prev != kindRequestInit {
					t.Fatalf("stream %d: response_init after %v", e.id, prev)
				}
			case kindResponseEnd: // response_init may have been dropped (full queue)
				if prev != kindResponseInit && prev != kindRequestInit {
					t.Fatalf("stream %d: response_end after %v", e.id, prev)
				}
			}
			state[e.id] = e.kind
		}
	}
	close(stop)
	wg.Wait()
	if h.Observing() {
		t.Error("observers left but the hub still observes")
	}
	if requests.Load() == 0 {
		t.Error("the data path did not run")
	}
}

// serve runs the Tap service on loopback and returns a client.
func serve(t *testing.T, h *Hub) tapv1.TapClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	NewServer(h).Register(gs)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return tapv1.NewTapClient(cc)
}

func waitObservers(t *testing.T, h *Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Observers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d observers, want %d", h.Observers(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestObserveLimit(t *testing.T) {
	h := NewHub(Options{})
	client := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Observe(ctx, &tapv1.ObserveRequest{Match: &tapv1.Match{Method: "POST"}, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	waitObservers(t, h, 1)
	if tp := h.Start(outReq("/not-post")); tp != nil {
		t.Fatal("a GET was tapped")
	}
	first := h.Start(inReq("/1"))
	second := h.Start(inReq("/2"))
	if third := h.Start(inReq("/3")); third != nil {
		t.Error("a third request was tapped with limit 2")
	}
	first.Response(200)
	second.Response(201)
	second.End(0, "", false, nil)
	// The stream must still be open: the first request has not ended.
	var got []*tapv1.TapEvent
	for range 4 {
		ev, err := s.Recv()
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		got = append(got, ev)
	}
	first.End(5, "", false, nil)
	for {
		ev, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != 6 {
		t.Fatalf("%d events, want 6: %v", len(got), got)
	}
	last := got[5]
	if last.GetStreamId() != 1 || last.GetResponseEnd().GetResponseBytes() != 5 || last.GetClientId() != "client.ns.serviceaccount.identity.conduit.cluster.local" {
		t.Errorf("last event %v", last)
	}
	waitObservers(t, h, 0)
}

// TestObserveNotUTF8: a request's path (decoded from %FF), authority or a
// stream's error need not be UTF-8; its events still reach the observer
// (protobuf refuses to send such strings) and the stream goes on.
func TestObserveNotUTF8(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Request)
		err    error
		check  func(req *tapv1.RequestInit, end *tapv1.ResponseEnd) bool
	}{
		{name: "path", modify: func(r *Request) { r.Path = "/caf\xe9" },
			check: func(req *tapv1.RequestInit, _ *tapv1.ResponseEnd) bool { return req.GetPath() == "/caf\uFFFD" }},
		{name: "authority", modify: func(r *Request) { r.Authority = "web\xff:80" },
			check: func(req *tapv1.RequestInit, _ *tapv1.ResponseEnd) bool { return req.GetAuthority() == "web\uFFFD:80" }},
		{name: "method", modify: func(r *Request) { r.Method = "G\xc3T" },
			check: func(req *tapv1.RequestInit, _ *tapv1.ResponseEnd) bool { return req.GetMethod() == "G\uFFFDT" }},
		{name: "error", err: errors.New("bad header \"\xfe\""),
			check: func(_ *tapv1.RequestInit, end *tapv1.ResponseEnd) bool {
				return end.GetError() == "bad header \"\uFFFD\""
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHub(Options{})
			client := serve(t, h)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := client.Observe(ctx, &tapv1.ObserveRequest{})
			if err != nil {
				t.Fatal(err)
			}
			waitObservers(t, h, 1)
			r := inReq("/x")
			if tt.modify != nil {
				tt.modify(&r)
			}
			tp := h.Start(r)
			tp.Response(200)
			tp.End(3, "", false, tt.err)
			h.Start(inReq("/next")).End(0, "", false, nil)
			var got []*tapv1.TapEvent
			for range 5 {
				ev, err := s.Recv()
				if err != nil {
					t.Fatalf("after %d events: %v", len(got), err)
				}
				got = append(got, ev)
			}
			if !tt.check(got[0].GetRequestInit(), got[2].GetResponseEnd()) {
				t.Errorf("events %v", got[:3])
			}
			if got[3].GetRequestInit().GetPath() != "/next" {
				t.Errorf("next request's event %v", got[3])
			}
		})
	}
}

func TestObserveEndsOnCancelAndClose(t *testing.T) {
	h := NewHub(Options{})
	client := serve(t, h)

	ctx, cancel := context.WithCancel(context.Background())
	if _, err := client.Observe(ctx, &tapv1.ObserveRequest{}); err != nil {
		t.Fatal(err)
	}
	waitObservers(t, h, 1)
	cancel()
	waitObservers(t, h, 0) // the client's cancel removed the observer

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Observe(ctx, &tapv1.ObserveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitObservers(t, h, 1)
	h.Close()
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("after Close: %v, want Unavailable", err)
	}
	waitObservers(t, h, 0)
	s, err = client.Observe(ctx, &tapv1.ObserveRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Observe after Close: %v, want Unavailable", err)
	}

	s, err = serve(t, NewHub(Options{})).Observe(ctx, &tapv1.ObserveRequest{Match: &tapv1.Match{Direction: 9}})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad direction: %v, want InvalidArgument", err)
	}
}

// BenchmarkDataPathNoObserver is what inbound and outbound do per request
// when nobody observes: one atomic load, then no-op calls on a nil *Tap.
func BenchmarkDataPathNoObserver(b *testing.B) {
	h := NewHub(Options{})
	req := outReq("/api")
	b.ReportAllocs()
	for b.Loop() {
		var tp *Tap
		if h.Observing() {
			tp = h.Start(req)
		}
		tp.Response(200)
		tp.End(10, "", false, nil)
	}
}

// BenchmarkStartNoObserver calls Start unguarded (the Request is copied).
func BenchmarkStartNoObserver(b *testing.B) {
	h := NewHub(Options{})
	req := outReq("/api")
	b.ReportAllocs()
	for b.Loop() {
		tp := h.Start(req)
		tp.Response(200)
		tp.End(10, "", false, nil)
	}
}

func BenchmarkStartObserverNoMatch(b *testing.B) {
	h := NewHub(Options{})
	o, _ := h.newObserver(&tapv1.ObserveRequest{Match: &tapv1.Match{PathPrefix: "/other"}})
	h.add(o, 0)
	req := outReq("/api")
	b.ReportAllocs()
	for b.Loop() {
		tp := h.Start(req)
		tp.Response(200)
		tp.End(10, "", false, nil)
	}
}

func BenchmarkStartObserved(b *testing.B) {
	h := NewHub(Options{})
	o, _ := h.newObserver(&tapv1.ObserveRequest{MaxRps: 1 << 31})
	h.add(o, 0)
	req := outReq("/api")
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-o.events:
			case <-done:
				return
			}
		}
	}()
	defer close(done)
	b.ReportAllocs()
	for b.Loop() {
		tp := h.Start(req)
		tp.Response(200)
		tp.End(10, "", false, nil)
	}
}

// TestObserversBounded: a proxy serves at most MaxObservers tap streams at
// once (each is matched against every request); one more is refused with
// ResourceExhausted, and is served once another has ended. A rate above
// MaxRPS is lowered to it.
func TestObserversBounded(t *testing.T) {
	h := NewHub(Options{})
	client := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cancels []context.CancelFunc
	for range MaxObservers {
		octx, ocancel := context.WithCancel(ctx)
		cancels = append(cancels, ocancel)
		if _, err := client.Observe(octx, &tapv1.ObserveRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	waitObservers(t, h, MaxObservers)
	s, err := client.Observe(ctx, &tapv1.ObserveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "retry once one has ended") {
		t.Fatalf("observer %d: %v, want ResourceExhausted", MaxObservers+1, err)
	}
	cancels[0]()
	waitObservers(t, h, MaxObservers-1)
	if _, err := client.Observe(ctx, &tapv1.ObserveRequest{}); err != nil {
		t.Fatal(err)
	}
	waitObservers(t, h, MaxObservers)
	for _, c := range cancels {
		c()
	}

	o, err := h.newObserver(&tapv1.ObserveRequest{MaxRps: 1e9})
	if err != nil || o.rate != MaxRPS {
		t.Errorf("max_rps 1e9: rate %v, %v; want %d", o.rate, err, MaxRPS)
	}
}
