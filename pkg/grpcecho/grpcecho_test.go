package grpcecho

import (
	"context"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// serve runs the echo service of pod on loopback until the test ends and
// returns a channel to it.
func serve(t *testing.T, pod string) *grpc.ClientConn {
	t.Helper()
	conn, _ := serveEcho(t, pod)
	return conn
}

// serveEcho is serve that also returns the service.
func serveEcho(t *testing.T, pod string) (*grpc.ClientConn, *Service) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	e := Register(s, pod)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, e
}

// alternating sends each call to the next of its channels in turn: a
// balancer with a known outcome.
type alternating struct {
	conns []grpc.ClientConnInterface
	next  int
}

func (a *alternating) pick() grpc.ClientConnInterface {
	c := a.conns[a.next%len(a.conns)]
	a.next++
	return c
}

func (a *alternating) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return a.pick().Invoke(ctx, method, args, reply, opts...)
}

func (a *alternating) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return a.pick().NewStream(ctx, desc, method, opts...)
}

func TestUnaryCallsCountsPods(t *testing.T) {
	conn := &alternating{conns: []grpc.ClientConnInterface{serve(t, "a"), serve(t, "b"), serve(t, "c")}}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "conduit-client-id", "web.shop")
	got, err := UnaryCalls(ctx, conn, 7, 100)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"a": 3, "b": 2, "c": 2}; got.Calls != 7 || !maps.Equal(got.Pods, want) {
		t.Errorf("%d calls answered by %v, want 7 by %v", got.Calls, got.Pods, want)
	}
	if want := map[string]int{"web.shop": 7}; !maps.Equal(got.ClientIDs, want) {
		t.Errorf("client ids seen %v, want %v", got.ClientIDs, want)
	}
}

// TestUnaryCallsStops: a call that fails ends the calls, with its number,
// and what was counted so far.
func TestUnaryCallsStops(t *testing.T) {
	up := serve(t, "a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	down, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	got, err := UnaryCalls(t.Context(), &alternating{conns: []grpc.ClientConnInterface{up, down}}, 4, 10)
	if err == nil || !strings.Contains(err.Error(), "unary call 2 of 4") {
		t.Fatalf("err = %v, want call 2 of 4 to fail", err)
	}
	if got.Calls != 1 || got.Pods["a"] != 1 {
		t.Errorf("counted %+v, want the one call a answered", got)
	}
}

func TestHold(t *testing.T) {
	conn, e := serveEcho(t, "a")
	c := testgrpc.NewTestServiceClient(conn)
	call := func(hold string) error {
		ctx := metadata.AppendToOutgoingContext(t.Context(), HoldKey, hold)
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	}
	// A hold that ends is answered, and not counted.
	start := time.Now()
	if err := call("200ms"); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("held 200ms: %v after %v, want an answer after 200ms", err, time.Since(start))
	}
	if err := call("soon"); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), HoldKey) {
		t.Errorf("hold soon: %v, want InvalidArgument naming %s", err, HoldKey)
	}
	if n := e.Abandoned(); n != 0 {
		t.Fatalf("Abandoned = %d before any cancellation", n)
	}
	// Cancelled without a deadline: the server learns it from RST_STREAM.
	start = time.Now()
	if err := CancelHeld(t.Context(), conn, time.Minute, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("CancelHeld returned after %v", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Abandoned() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.Abandoned(); n != 1 {
		t.Fatalf("Abandoned = %d after one cancelled call, want 1", n)
	}
	// A call answered before the cancellation is an error of CancelHeld.
	if err := CancelHeld(t.Context(), conn, 0, time.Minute); err == nil || !strings.Contains(err.Error(), "answered") {
		t.Errorf("CancelHeld of a call held 0s: %v, want an error saying it was answered", err)
	}
}
