package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/internal/logtest"
)

// scriptSrv sends a script of updates on each Get stream, then either holds
// the stream open or fails it.
type scriptSrv struct {
	destinationv1.UnimplementedDestinationServer
	streams chan []*destinationv1.Update // one script per stream
	gets    chan struct{}                // when set, told of every Get
}

func (s *scriptSrv) Get(req *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.Update]) error {
	if req.GetPath() == "bad" {
		return status.Error(codes.InvalidArgument, "not a service")
	}
	if s.gets != nil {
		s.gets <- struct{}{}
	}
	script, ok := <-s.streams
	if !ok {
		<-stream.Context().Done()
		return nil
	}
	for _, u := range script {
		if u == nil {
			return status.Error(codes.Unavailable, "control plane gone")
		}
		if err := stream.Send(u); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	<-stream.Context().Done()
	return nil
}

func addr(ip string, port uint32) *destinationv1.WeightedAddr {
	return &destinationv1.WeightedAddr{Addr: &destinationv1.TcpAddress{Ip: ip, Port: port}, Weight: 1,
		MetricLabels: map[string]string{"pod": ip}}
}

func add(as ...*destinationv1.WeightedAddr) *destinationv1.Update {
	return &destinationv1.Update{Update: &destinationv1.Update_Add{Add: &destinationv1.WeightedAddrSet{Addrs: as, MetricLabels: map[string]string{"namespace": "ns"}}}}
}

func remove(ip string, port uint32) *destinationv1.Update {
	return &destinationv1.Update{Update: &destinationv1.Update_Remove{Remove: &destinationv1.AddrSet{Addrs: []*destinationv1.TcpAddress{{Ip: ip, Port: port}}}}}
}

func client(t *testing.T, srv *scriptSrv) *Client {
	t.Helper()
	return clientOpts(t, srv, Options{})
}

func addrs(e *Endpoints) []string {
	var out []string
	for _, a := range e.Addrs {
		out = append(out, a.Addr)
	}
	return out
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeltasAndReconnect(t *testing.T) {
	srv := &scriptSrv{streams: make(chan []*destinationv1.Update, 2)}
	// First stream: snapshot of two, remove one, then the stream fails.
	srv.streams <- []*destinationv1.Update{add(addr("10.0.0.1", 80), addr("10.0.0.2", 80)), remove("10.0.0.1", 80), nil}
	c := client(t, srv)
	r := c.Resolve("web.ns.svc.cluster.local:80")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	first := r.Wait(ctx)
	if !first.Known || !first.Exists || len(first.Addrs) != 2 {
		t.Fatalf("snapshot %+v", first)
	}
	if first.Addrs[0].Labels != `dst_namespace="ns",dst_pod="10.0.0.1"` {
		t.Errorf("labels %q", first.Addrs[0].Labels)
	}
	eventually(t, "the delta", func() bool { return len(r.Endpoints().Addrs) == 1 })
	if got := addrs(r.Endpoints()); got[0] != "10.0.0.2:80" {
		t.Errorf("after remove: %v", got)
	}
	// The stream failed: the last state stays while reconnecting.
	time.Sleep(50 * time.Millisecond)
	if got := addrs(r.Endpoints()); len(got) != 1 || got[0] != "10.0.0.2:80" {
		t.Errorf("while disconnected: %v", got)
	}
	// The new stream's first message replaces the state.
	srv.streams <- []*destinationv1.Update{add(addr("10.0.0.3", 80))}
	eventually(t, "the new snapshot", func() bool {
		a := addrs(r.Endpoints())
		return len(a) == 1 && a[0] == "10.0.0.3:80"
	})
	close(srv.streams)
}

func TestNoEndpointsAndRejectedNames(t *testing.T) {
	srv := &scriptSrv{streams: make(chan []*destinationv1.Update, 2)}
	srv.streams <- []*destinationv1.Update{{Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: true}}}}
	c := client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e := c.Resolve("empty.ns.svc.cluster.local:80").Wait(ctx)
	if !e.Known || !e.Exists || len(e.Addrs) != 0 {
		t.Errorf("service without endpoints: %+v", e)
	}
	bad := c.Resolve("bad").Wait(ctx)
	if !bad.Known || bad.Exists {
		t.Errorf("rejected name: %+v", bad)
	}
	// Bad addresses from the control plane are ignored.
	if a := convert(&destinationv1.WeightedAddr{Addr: &destinationv1.TcpAddress{Ip: "nope", Port: 80}}, nil); a != nil {
		t.Errorf("accepted %+v", a)
	}
	if a := convert(&destinationv1.WeightedAddr{Addr: &destinationv1.TcpAddress{Ip: "10.0.0.1", Port: 70000}}, nil); a != nil {
		t.Errorf("accepted port 70000")
	}
	close(srv.streams)
}

func noEndpoints(exists bool) *destinationv1.Update {
	return &destinationv1.Update{Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: exists}}}
}

// A delta that adds nothing valid or removes what is not there must not
// turn a name that is not a Service (forwarded to its original
// destination) into a Service without endpoints (503), nor drop endpoints.
func TestDeltasKeepState(t *testing.T) {
	tests := []struct {
		name       string
		script     []*destinationv1.Update
		wantExists bool
		wantAddrs  []string
	}{
		{"remove of unknown endpoint after not-a-service", []*destinationv1.Update{noEndpoints(false), remove("10.0.0.9", 80)}, false, nil},
		{"empty update after not-a-service", []*destinationv1.Update{noEndpoints(false), {}}, false, nil},
		{"empty update keeps endpoints", []*destinationv1.Update{add(addr("10.0.0.1", 80)), {}}, true, []string{"10.0.0.1:80"}},
		{"remove of unknown endpoint keeps endpoints", []*destinationv1.Update{add(addr("10.0.0.1", 80)), remove("10.0.0.9", 80)}, true, []string{"10.0.0.1:80"}},
		{"duplicate add", []*destinationv1.Update{add(addr("10.0.0.1", 80)), add(addr("10.0.0.1", 80))}, true, []string{"10.0.0.1:80"}},
		{"invalid addresses ignored", []*destinationv1.Update{add(addr("10.0.0.1", 80)), add(addr("nope", 80), addr("10.0.0.2", 0))}, true, []string{"10.0.0.1:80"}},
		{"service emptied stays a service", []*destinationv1.Update{add(addr("10.0.0.1", 80)), remove("10.0.0.1", 80)}, true, nil},
		{"no endpoints while in use", []*destinationv1.Update{add(addr("10.0.0.1", 80)), noEndpoints(true)}, true, nil},
		{"remove of an IPv6 address in another form", []*destinationv1.Update{add(addr("fd00:0:0::1", 80), addr("fd00::2", 80)), remove("FD00::1", 80)}, true, []string{"[fd00::2]:80"}},
		{"remove of an IPv4-mapped address as IPv4", []*destinationv1.Update{add(addr("::ffff:10.0.0.1", 80), addr("10.0.0.2", 80)), remove("10.0.0.1", 80)}, true, []string{"10.0.0.2:80"}},
		{"zoned address ignored", []*destinationv1.Update{add(addr("fe80::1%eth0", 80), addr("10.0.0.2", 80))}, true, []string{"10.0.0.2:80"}},
		{"added after not-a-service", []*destinationv1.Update{noEndpoints(false), add(addr("10.0.0.1", 80))}, true, []string{"10.0.0.1:80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &scriptSrv{streams: make(chan []*destinationv1.Update, 1), gets: make(chan struct{}, 2)}
			// The stream fails after the script: the client reconnects
			// once it has applied every message before the failure.
			srv.streams <- append(tt.script, nil)
			r := client(t, srv).Resolve("web.ns.svc.cluster.local:80")
			for range 2 {
				select {
				case <-srv.gets:
				case <-time.After(3 * time.Second):
					t.Fatal("no reconnection")
				}
			}
			e := r.Endpoints()
			if !e.Known || e.Exists != tt.wantExists || !slices.Equal(addrs(e), tt.wantAddrs) {
				t.Errorf("state Known=%v Exists=%v %v, want Exists=%v %v", e.Known, e.Exists, addrs(e), tt.wantExists, tt.wantAddrs)
			}
			close(srv.streams)
		})
	}
}

// profileSrv sends a script of profiles on each GetProfile stream, then
// holds it open.
type profileSrv struct {
	destinationv1.UnimplementedDestinationServer
	script []*destinationv1.DestinationProfile
}

func (s *profileSrv) GetProfile(_ *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	for _, p := range s.script {
		if err := stream.Send(p); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	<-stream.Context().Done()
	return nil
}

func profileClient(t *testing.T, srv destinationv1.DestinationServer, log *slog.Logger) *Client {
	t.Helper()
	return clientOpts(t, srv, Options{Logger: log})
}

func clientOpts(t *testing.T, srv destinationv1.DestinationServer, o Options) *Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	destinationv1.RegisterDestinationServer(s, srv)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	o.MinBackoff, o.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	return New(ctx, cc, o)
}

func badRegexRoute() []*destinationv1.Route {
	return []*destinationv1.Route{{Condition: &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_Path{Path: &destinationv1.PathMatch{Regex: "("}}}}}
}

// An invalid profile keeps the previous one; when there is none, the name
// still gets an answer (else every request waits the discovery timeout
// for one), without the invalid parts.
func TestInvalidProfile(t *testing.T) {
	ep := addr("10.0.0.7", 8080)
	tests := []struct {
		name       string
		script     []*destinationv1.DestinationProfile
		wantFQN    string
		wantOpaque bool
		wantRoutes int
		wantEP     string
	}{
		{"invalid first: answered without routes", []*destinationv1.DestinationProfile{
			{FullyQualifiedName: "web.ns.svc.cluster.local", OpaqueProtocol: true, Routes: badRegexRoute(), Endpoint: ep},
		}, "web.ns.svc.cluster.local", true, 0, "10.0.0.7:8080"},
		{"invalid after valid: previous kept", []*destinationv1.DestinationProfile{
			{FullyQualifiedName: "web.ns.svc.cluster.local", Routes: []*destinationv1.Route{{MetricsLabels: map[string]string{"route": "all"}}}},
			{FullyQualifiedName: "other.ns.svc.cluster.local", Routes: badRegexRoute()},
		}, "web.ns.svc.cluster.local", false, 1, ""},
		{"NaN retry ratio first", []*destinationv1.DestinationProfile{
			{FullyQualifiedName: "web.ns.svc.cluster.local", RetryBudget: &destinationv1.RetryBudget{RetryRatio: float32(math.NaN())}},
		}, "web.ns.svc.cluster.local", false, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logtest.Buffer
			c := profileClient(t, &profileSrv{script: tt.script}, slog.New(slog.NewTextHandler(&logs, nil)))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			st := c.Profile("web.ns.svc.cluster.local:80").Wait(ctx)
			if !st.Known {
				t.Fatal("no profile state after an invalid profile")
			}
			time.Sleep(time.Duration(len(tt.script)) * 40 * time.Millisecond) // the rest of the script
			st = c.Profile("web.ns.svc.cluster.local:80").State()
			if st.Profile == nil || st.Profile.FQN != tt.wantFQN || st.Profile.Opaque != tt.wantOpaque || len(st.Profile.Routes) != tt.wantRoutes {
				t.Errorf("profile %+v", st.Profile)
			}
			if got := ""; st.Endpoint != nil || tt.wantEP != "" {
				if st.Endpoint != nil {
					got = st.Endpoint.Addr
				}
				if got != tt.wantEP {
					t.Errorf("endpoint %q, want %q", got, tt.wantEP)
				}
			}
			if !strings.Contains(logs.String(), "invalid service profile") {
				t.Errorf("not logged: %s", logs.String())
			}
		})
	}
}

func TestInvalidEndpointLogged(t *testing.T) {
	var logs logtest.Buffer
	srv := &scriptSrv{streams: make(chan []*destinationv1.Update, 1)}
	srv.streams <- []*destinationv1.Update{add(addr("10.0.0.1", 80), addr("10.0.0.2", 0), addr("nope", 80))}
	c := profileClient(t, srv, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if got := addrs(c.Resolve("web.ns.svc.cluster.local:80").Wait(ctx)); !slices.Equal(got, []string{"10.0.0.1:80"}) {
		t.Errorf("endpoints %v", got)
	}
	for _, want := range []string{"ip=10.0.0.2 port=0", "ip=nope port=80"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("invalid endpoint %s not logged: %s", want, logs.String())
		}
	}
	close(srv.streams)
}

// A watch unused for the idle timeout is dropped and says so: whoever kept
// it resolves the name again and gets a live one.
func TestDroppedWhenUnused(t *testing.T) {
	srv := &scriptSrv{streams: make(chan []*destinationv1.Update, 2)}
	srv.streams <- []*destinationv1.Update{add(addr("10.0.0.1", 80))}
	srv.streams <- []*destinationv1.Update{add(addr("10.0.0.2", 80))}
	c := clientOpts(t, srv, Options{IdleTimeout: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := c.Resolve("web.ns.svc.cluster.local:80")
	if got := addrs(r.Wait(ctx)); len(got) != 1 || got[0] != "10.0.0.1:80" || r.Dropped() {
		t.Fatalf("first watch: %v, dropped %v", got, r.Dropped())
	}
	eventually(t, "the watch dropped", r.Dropped)
	r2 := c.Resolve("web.ns.svc.cluster.local:80")
	if r2 == r || r2.Dropped() {
		t.Fatal("a dropped watch returned again")
	}
	if got := addrs(r2.Wait(ctx)); len(got) != 1 || got[0] != "10.0.0.2:80" {
		t.Errorf("new watch: %v", got)
	}
	close(srv.streams)
}

// outageSrv answers every Get with one endpoint and every GetProfile with
// a profile naming it, unless it is down (streams fail) or hanging
// (streams stay open without an answer).
type outageSrv struct {
	destinationv1.UnimplementedDestinationServer
	ip            atomic.Value // string
	down, hanging atomic.Bool
}

func (s *outageSrv) answer(ctx context.Context, send func(ip string) error) error {
	switch {
	case s.down.Load():
		return status.Error(codes.Unavailable, "control plane gone")
	case !s.hanging.Load():
		if err := send(s.ip.Load().(string)); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

func (s *outageSrv) Get(_ *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.Update]) error {
	return s.answer(stream.Context(), func(ip string) error { return stream.Send(add(addr(ip, 80))) })
}

func (s *outageSrv) GetProfile(_ *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	return s.answer(stream.Context(), func(ip string) error {
		return stream.Send(&destinationv1.DestinationProfile{FullyQualifiedName: "web.ns.svc.cluster.local", Endpoint: addr(ip, 80)})
	})
}

// A name whose watch was dropped for lack of use, asked for again while
// the destination service does not answer, gets what the service said
// before (not more than LastKnownMaxAge ago); an answer replaces it.
func TestDroppedWatchFallsBack(t *testing.T) {
	const path = "web.ns.svc.cluster.local:80"
	// view reads the endpoint of either kind of watch.
	type view struct {
		wait    func(c *Client, ctx context.Context) (known bool, ep string)
		dropped func(c *Client) bool
	}
	views := map[string]view{
		"endpoints": {
			wait: func(c *Client, ctx context.Context) (bool, string) {
				e := c.Resolve(path).Wait(ctx)
				if len(e.Addrs) != 1 {
					return e.Known, fmt.Sprint(addrs(e))
				}
				return e.Known, e.Addrs[0].Addr
			},
			dropped: func(c *Client) bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return c.dests[path] == nil
			},
		},
		"profile": {
			wait: func(c *Client, ctx context.Context) (bool, string) {
				st := c.Profile(path).Wait(ctx)
				if st.Endpoint == nil {
					return st.Known, ""
				}
				return st.Known, st.Endpoint.Addr
			},
			dropped: func(c *Client) bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return c.profiles[path] == nil
			},
		},
	}
	tests := []struct {
		name      string
		maxAge    time.Duration
		hang      bool          // the new watch's stream hangs rather than fails
		knownDown bool          // another stream failed before the new watch
		after     time.Duration // from the drop to the new watch
		wantKnown bool
	}{
		{"the stream fails", time.Hour, false, false, 0, true},
		{"the stream does not answer in time", time.Hour, true, false, 0, true},
		{"the service is known unreachable", time.Hour, true, true, 0, true},
		{"older than the maximum age", 300 * time.Millisecond, false, false, 400 * time.Millisecond, false},
		{"none kept", 0, false, false, 0, false},
	}
	for kind, v := range views {
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				srv := &outageSrv{}
				srv.ip.Store("10.0.0.1")
				var logs logtest.Buffer
				// The idle timeout is longer than the wait below, so that
				// the new watch is not dropped while a caller waits on it.
				c := clientOpts(t, srv, Options{IdleTimeout: 250 * time.Millisecond, LastKnownMaxAge: tt.maxAge,
					Logger: slog.New(slog.NewTextHandler(&logs, nil))})
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				if known, ep := v.wait(c, ctx); !known || ep != "10.0.0.1:80" {
					t.Fatalf("first watch: known %v, %s", known, ep)
				}
				eventually(t, "the watch dropped", func() bool { return v.dropped(c) })
				time.Sleep(tt.after)
				srv.down.Store(!tt.hang)
				srv.hanging.Store(tt.hang)
				srv.ip.Store("10.0.0.2")
				if tt.knownDown {
					c.unreachable.Store(true)
				}

				wctx, wcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer wcancel()
				start := time.Now()
				known, ep := v.wait(c, wctx)
				took := time.Since(start)
				if known != tt.wantKnown {
					t.Fatalf("new watch while unanswered: known %v (%s), want %v", known, ep, tt.wantKnown)
				}
				logged := strings.Contains(logs.String(), "using what it said before")
				if logged != tt.wantKnown {
					t.Errorf("fallback logged %v, want %v: %s", logged, tt.wantKnown, logs.String())
				}
				if !tt.wantKnown {
					return
				}
				if ep != "10.0.0.1:80" {
					t.Errorf("fell back on %s, want 10.0.0.1:80", ep)
				}
				// Status counts the watch as stale until an answer comes.
				stale := func() int {
					_, eps, profiles := c.Status()
					if kind == "endpoints" {
						return eps
					}
					return profiles
				}
				if n := stale(); n != 1 {
					t.Errorf("%d stale %s watches while it serves the fallback, want 1", n, kind)
				}
				if down, _, _ := c.Status(); down != (!tt.hang || tt.knownDown) {
					t.Errorf("unreachable %v with a stream that hangs %v, known down %v", down, tt.hang, tt.knownDown)
				}
				// A failed stream is not waited out, nor a hanging one when
				// the service is known to be unreachable.
				if hung := tt.hang && !tt.knownDown; !hung && took > 80*time.Millisecond {
					t.Errorf("fell back after %v, want at the stream's failure", took)
				} else if hung && took < 90*time.Millisecond {
					t.Errorf("fell back after %v, before the caller's wait (100ms) ended", took)
				}
				// The service answers again: its answer replaces the old state.
				srv.down.Store(false)
				srv.hanging.Store(false)
				if tt.hang {
					return // its stream never answers
				}
				eventually(t, "the answer replacing the fallback", func() bool {
					_, ep := v.wait(c, ctx)
					return ep == "10.0.0.2:80"
				})
				if down, _, _ := c.Status(); down || stale() != 0 {
					t.Errorf("after the answer: unreachable %v, %d stale", down, stale())
				}
			})
		}
	}
}

// A watch that fell back and is dropped again before any answer keeps the
// age of what it fell back on, so that state still expires in time.
func TestFallbackKeepsItsAge(t *testing.T) {
	const path = "web.ns.svc.cluster.local:80"
	srv := &outageSrv{}
	srv.ip.Store("10.0.0.1")
	c := clientOpts(t, srv, Options{IdleTimeout: 60 * time.Millisecond, LastKnownMaxAge: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.Resolve(path).Wait(ctx)
	last := func() *lastKnown[Endpoints] {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.lastDests[path]
	}
	eventually(t, "the watch dropped", func() bool { return last() != nil })
	first := last().at
	// A watch nobody waited on, whose stream hangs: dropped unanswered.
	srv.hanging.Store(true)
	c.Resolve(path)
	eventually(t, "the unanswered watch taking the state", func() bool { return last() == nil })
	eventually(t, "the unanswered watch dropped", func() bool { return last() != nil })
	if got := last().at; !got.Equal(first) {
		t.Errorf("state kept through an unanswered watch is dated %v, want %v", got, first)
	}
	// A watch that fell back on it, its stream failing.
	srv.hanging.Store(false)
	srv.down.Store(true)
	if e := c.Resolve(path).Wait(ctx); !e.Known || len(e.Addrs) != 1 {
		t.Fatalf("no fallback: %+v", e)
	}
	eventually(t, "the second watch dropped", func() bool { return last() != nil })
	if got := last().at; !got.Equal(first) {
		t.Errorf("fallback dropped again is dated %v, want %v (when it was last current)", got, first)
	}
}

// The client says the service is unreachable only while it has a stream to
// say so: once every watch is dropped, it no longer does (until a new
// stream fails), so that a proxy idle since an outage does not report one.
func TestUnreachableClearedWithoutWatches(t *testing.T) {
	srv := &outageSrv{}
	srv.down.Store(true)
	c := clientOpts(t, srv, Options{IdleTimeout: 60 * time.Millisecond})
	c.Resolve("web.ns.svc.cluster.local:80")
	eventually(t, "the stream failing", func() bool { down, _, _ := c.Status(); return down })
	eventually(t, "the watch dropped and the state cleared", func() bool {
		down, _, _ := c.Status()
		c.mu.Lock()
		defer c.mu.Unlock()
		return !down && len(c.dests) == 0
	})
}
