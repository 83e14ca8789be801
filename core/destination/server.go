package destination

import (
	"context"
	"log/slog"
	"sync"

	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Server implements conduit.destination.v1.Destination on top of an Index.
type Server struct {
	pb.UnimplementedDestinationServer
	x       *Index
	log     *slog.Logger
	streams *prometheus.GaugeVec
	updates *prometheus.CounterVec

	drainOnce sync.Once
	draining  chan struct{}
}

// Drain ends every open stream; new streams end at once.
func (s *Server) Drain() { s.drainOnce.Do(func() { close(s.draining) }) }

// NewServer returns the gRPC service of x. reg, when not nil, receives its metrics.
func NewServer(x *Index, reg prometheus.Registerer) *Server {
	s := &Server{
		x:        x,
		log:      x.log,
		draining: make(chan struct{}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "conduit_destination_streams", Help: "Open Get and GetProfile streams.",
		}, []string{"method"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conduit_destination_updates_total", Help: "Messages sent on Get and GetProfile streams.",
		}, []string{"method", "kind"}),
	}
	if reg != nil {
		reg.MustRegister(s.streams, s.updates)
	}
	return s
}

// Register adds the service to g.
func (s *Server) Register(g *grpc.Server) { pb.RegisterDestinationServer(g, s) }

// Ready reports whether the informer caches have synced.
func (s *Server) Ready() bool { return s.x.ready() }

func (s *Server) waitSynced(ctx context.Context) error {
	select {
	case <-s.x.synced:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// Get streams the endpoints of an authority: a snapshot, then deltas.
func (s *Server) Get(req *pb.GetDestination, stream grpc.ServerStreamingServer[pb.Update]) error {
	t, err := parseAuthority(req.GetPath(), s.x.cfg.ClusterDomain)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "destination: %v", err)
	}
	ctx := stream.Context()
	if err := s.waitSynced(ctx); err != nil {
		return err
	}
	s.streams.WithLabelValues("Get").Inc()
	defer s.streams.WithLabelValues("Get").Dec()

	f := &follower[*epState]{h: s.x.endpoints}
	defer f.stop()

	sent := map[string]*pb.WeightedAddr{}
	var sentExists *bool // nil until the snapshot is sent
	for {
		f.follow(s.x.endpointTopic(t))
		st := f.tp.state()
		for _, u := range diff(st, sent, sentExists) {
			if err := stream.Send(u); err != nil {
				return err
			}
			s.updates.WithLabelValues("Get", updateKind(u)).Inc()
		}
		e := st.exists
		sentExists = &e
		select {
		case <-f.wake:
		case <-ctx.Done():
			return nil
		case <-s.draining:
			return nil
		}
	}
}

func updateKind(u *pb.Update) string {
	switch u.Update.(type) {
	case *pb.Update_Add:
		return "add"
	case *pb.Update_Remove:
		return "remove"
	default:
		return "no_endpoints"
	}
}

// diff returns the messages that move a stream from sent to st, and updates
// sent. sentExists is nil before the first (snapshot) message.
func diff(st *epState, sent map[string]*pb.WeightedAddr, sentExists *bool) []*pb.Update {
	if len(st.addrs) == 0 {
		if sentExists != nil && len(sent) == 0 && *sentExists == st.exists {
			return nil
		}
		clear(sent)
		return []*pb.Update{{Update: &pb.Update_NoEndpoints{NoEndpoints: &pb.NoEndpoints{Exists: st.exists}}}}
	}
	var out []*pb.Update
	var removed []*pb.TcpAddress
	for _, k := range sortedKeys(sent) {
		if _, ok := st.addrs[k]; !ok {
			removed = append(removed, sent[k].Addr)
			delete(sent, k)
		}
	}
	if len(removed) > 0 {
		out = append(out, &pb.Update{Update: &pb.Update_Remove{Remove: &pb.AddrSet{Addrs: removed}}})
	}
	var added []*pb.WeightedAddr
	for _, k := range sortedKeys(st.addrs) {
		if old, ok := sent[k]; ok && proto.Equal(old, st.addrs[k]) {
			continue
		}
		added = append(added, st.addrs[k])
		sent[k] = st.addrs[k]
	}
	if len(added) > 0 {
		out = append(out, &pb.Update{Update: &pb.Update_Add{Add: &pb.WeightedAddrSet{Addrs: added, MetricLabels: st.labels}}})
	}
	return out
}

// GetProfile streams the profile of an authority or "ip:port".
func (s *Server) GetProfile(req *pb.GetDestination, stream grpc.ServerStreamingServer[pb.DestinationProfile]) error {
	t, err := parseAuthority(req.GetPath(), s.x.cfg.ClusterDomain)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "destination: %v", err)
	}
	ctx := stream.Context()
	if err := s.waitSynced(ctx); err != nil {
		return err
	}
	s.streams.WithLabelValues("GetProfile").Inc()
	defer s.streams.WithLabelValues("GetProfile").Dec()

	tok := parseContextToken(req.GetContextToken())
	f := &follower[*profileState]{h: s.x.profiles}
	defer f.stop()

	var last *pb.DestinationProfile
	for {
		f.follow(s.x.profileTopic(t, tok.NS))
		p := f.tp.state()
		if last == nil || !proto.Equal(last, p) {
			if err := stream.Send(p); err != nil {
				return err
			}
			s.updates.WithLabelValues("GetProfile", "profile").Inc()
			last = p
		}
		select {
		case <-f.wake:
		case <-ctx.Done():
			return nil
		case <-s.draining:
			return nil
		}
	}
}
