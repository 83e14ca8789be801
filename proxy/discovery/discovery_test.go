package discovery

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
)

// scriptSrv sends a script of updates on each Get stream, then either holds
// the stream open or fails it.
type scriptSrv struct {
	destinationv1.UnimplementedDestinationServer
	streams chan []*destinationv1.Update // one script per stream
}

func (s *scriptSrv) Get(req *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.Update]) error {
	if req.GetPath() == "bad" {
		return status.Error(codes.InvalidArgument, "not a service")
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
	return New(ctx, cc, Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
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
