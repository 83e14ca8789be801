package tap

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
)

// DefaultMaxRPS is the rate limit of an observer that asks for none.
const DefaultMaxRPS = 100

// MaxRPS is the highest rate limit an observer may ask for: each admitted
// request costs the data path its events.
const MaxRPS = 10000

// MaxObservers is how many observers a proxy serves at once: each one is
// matched against every request while it observes.
const MaxObservers = 16

// DefaultQueueSize is the number of events an observer may have pending
// before its events are dropped.
const DefaultQueueSize = 1024

// Request is what the data path knows when a request's headers are known.
// It is passed by value so that building it costs nothing when nobody
// observes; DestinationLabels is shared, never modified.
type Request struct {
	Direction           tapv1.Direction
	Source, Destination string // "ip:port"
	TLS                 bool
	ClientID, ServerID  string
	DestinationLabels   map[string]string // outbound: the endpoint's metric labels, without the dst_ prefix
	Route               string
	Method              string
	Scheme              string
	Authority           string
	Path                string
}

// Options configure a Hub.
type Options struct {
	// QueueSize bounds each observer's pending events (default DefaultQueueSize).
	QueueSize int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives one line per observer (default: discard).
	Log *slog.Logger
}

// Hub connects the data path to the observers. A nil *Hub observes nothing.
type Hub struct {
	// obs is nil when nobody observes, else an immutable snapshot.
	obs       atomic.Pointer[[]*observer]
	mu        sync.Mutex // serialises changes of obs
	closed    chan struct{}
	closeOnce sync.Once
	queue     int
	now       func() time.Time
	log       *slog.Logger
}

// NewHub returns a Hub without observers.
func NewHub(o Options) *Hub {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Hub{closed: make(chan struct{}), queue: o.QueueSize, now: o.Now, log: o.Log}
}

// Observing reports whether anybody observes: one atomic load. The data path
// checks it before computing Request fields that cost something.
func (h *Hub) Observing() bool { return h != nil && h.obs.Load() != nil }

// Observers is the number of current observers.
func (h *Hub) Observers() int {
	if h == nil {
		return 0
	}
	if p := h.obs.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// Close ends every Observe stream and refuses new ones (proxy shutdown).
func (h *Hub) Close() { h.closeOnce.Do(func() { close(h.closed) }) }

// Start reports a request whose headers are known. It returns nil when no
// observer takes it; otherwise request_init was queued for every observer
// that took it, and the caller must call End or Fail exactly once.
func (h *Hub) Start(r Request) *Tap {
	if h == nil {
		return nil
	}
	obs := h.obs.Load()
	if obs == nil {
		return nil
	}
	return h.start(*obs, r)
}

func (h *Hub) start(obs []*observer, r Request) *Tap {
	var now time.Time
	var t *Tap
	for _, o := range obs {
		if !o.matches(&r) {
			continue
		}
		if now.IsZero() {
			now = h.now()
		}
		if !o.admit(now) {
			continue
		}
		if t == nil {
			t = &Tap{req: r, at: now, hub: h}
			t.subs = t.one[:0]
		}
		t.subs = append(t.subs, sub{o: o, id: o.nextID.Add(1)})
	}
	if t == nil {
		return nil
	}
	for i := range t.subs {
		t.send(&t.subs[i], event{kind: kindRequestInit})
	}
	return t
}

// add registers o, unless max (when > 0) already observe.
func (h *Hub) add(o *observer, max int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	var next []*observer
	if cur := h.obs.Load(); cur != nil {
		if max > 0 && len(*cur) >= max {
			return false
		}
		next = append(next, *cur...)
	}
	next = append(next, o)
	h.obs.Store(&next)
	return true
}

func (h *Hub) remove(o *observer) {
	o.gone.Store(true)
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.obs.Load()
	if cur == nil {
		return
	}
	next := make([]*observer, 0, len(*cur))
	for _, x := range *cur {
		if x != o {
			next = append(next, x)
		}
	}
	if len(next) == 0 {
		h.obs.Store(nil)
		return
	}
	h.obs.Store(&next)
}

// Tap is one observed request. A nil *Tap ignores every call.
type Tap struct {
	req   Request
	at    time.Time
	hub   *Hub
	subs  []sub
	one   [1]sub // backs subs for the usual single observer
	ended atomic.Bool
}

type sub struct {
	o    *observer
	id   uint64
	skip bool // request_init was dropped: send nothing more
}

// Response reports the response headers.
func (t *Tap) Response(status int) {
	if t != nil {
		t.response(status)
	}
}

func (t *Tap) response(status int) {
	if t.ended.Load() {
		return
	}
	e := event{kind: kindResponseInit, status: status, since: t.hub.now().Sub(t.at)}
	for i := range t.subs {
		t.send(&t.subs[i], e)
	}
}

// End reports the end of the response stream: the body bytes, the gRPC
// status ("" when none), the proxy's classification, and err when the
// stream failed instead of completing. Only the first call counts.
func (t *Tap) End(bytes uint64, grpcStatus string, failure bool, err error) {
	if t != nil {
		t.end(bytes, grpcStatus, failure, err)
	}
}

func (t *Tap) end(bytes uint64, grpcStatus string, failure bool, err error) {
	if !t.ended.CompareAndSwap(false, true) {
		return
	}
	e := event{kind: kindResponseEnd, since: t.hub.now().Sub(t.at), bytes: bytes, failure: failure, grpcStatus: -1}
	if grpcStatus != "" {
		if v, perr := strconv.ParseUint(grpcStatus, 10, 32); perr == nil {
			e.grpcStatus = int64(v)
		}
	}
	if err != nil {
		e.err = err.Error()
		e.failure = true
	}
	for i := range t.subs {
		t.send(&t.subs[i], e)
		t.subs[i].o.finish()
	}
}

// Fail reports a request that got no response.
func (t *Tap) Fail(err error) {
	if err == nil {
		err = errors.New("no response")
	}
	t.End(0, "", true, err)
}

func (t *Tap) send(s *sub, e event) {
	if s.skip || s.o.gone.Load() {
		return
	}
	e.t, e.id = t, s.id
	select {
	case s.o.events <- e:
	default:
		s.o.dropped.Add(1)
		if e.kind == kindRequestInit {
			s.skip = true
		}
	}
}

type kind uint8

const (
	kindRequestInit kind = iota + 1
	kindResponseInit
	kindResponseEnd
)

// event is queued by the data path; the observer's stream turns it into a
// TapEvent, off the data path.
type event struct {
	t          *Tap
	id         uint64
	kind       kind
	status     int
	since      time.Duration
	bytes      uint64
	grpcStatus int64 // -1: none
	err        string
	failure    bool
}

func (e *event) proto() *tapv1.TapEvent {
	r := &e.t.req
	ev := &tapv1.TapEvent{
		Direction: r.Direction, Source: r.Source, Destination: r.Destination, Tls: r.TLS,
		ClientId: r.ClientID, ServerId: r.ServerID, DestinationLabels: r.DestinationLabels,
		StreamId: e.id, Route: r.Route,
	}
	switch e.kind {
	case kindRequestInit:
		ev.Event = &tapv1.TapEvent_RequestInit{RequestInit: &tapv1.RequestInit{
			Method: utf8Str(r.Method), Scheme: r.Scheme, Authority: utf8Str(r.Authority), Path: utf8Str(r.Path), At: timestamppb.New(e.t.at)}}
	case kindResponseInit:
		ev.Event = &tapv1.TapEvent_ResponseInit{ResponseInit: &tapv1.ResponseInit{
			HttpStatus: uint32(e.status), SinceRequestInit: durationpb.New(e.since)}}
	case kindResponseEnd:
		end := &tapv1.ResponseEnd{SinceRequestInit: durationpb.New(e.since), ResponseBytes: e.bytes, Error: utf8Str(e.err), Failure: e.failure}
		if e.grpcStatus >= 0 {
			gs := uint32(e.grpcStatus)
			end.GrpcStatus = &gs
		}
		ev.Event = &tapv1.TapEvent_ResponseEnd{ResponseEnd: end}
	}
	return ev
}

// utf8Str makes a string from the request (the client's bytes, or a path
// decoded from %XX) valid UTF-8: protobuf refuses to marshal a string field
// that is not, which would end the observer's stream.
func utf8Str(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// observer is one Observe stream.
type observer struct {
	dir       tapv1.Direction
	method    string
	prefix    string
	authority string
	labels    map[string]string

	events  chan event
	gone    atomic.Bool
	dropped atomic.Uint64
	nextID  atomic.Uint64

	mu       sync.Mutex // guards the rate limiter and admitted
	rate     float64
	tokens   float64
	last     time.Time
	limit    uint64 // 0: none
	admitted uint64

	finished  atomic.Uint64
	limitDone chan struct{} // closed when limit requests ended
}

func (h *Hub) newObserver(req *tapv1.ObserveRequest) (*observer, error) {
	m := req.GetMatch()
	switch d := m.GetDirection(); d {
	case tapv1.Direction_DIRECTION_UNSPECIFIED, tapv1.Direction_INBOUND, tapv1.Direction_OUTBOUND:
	default:
		return nil, fmt.Errorf("tap: unknown direction %d", d)
	}
	if m.GetDirection() == tapv1.Direction_INBOUND && len(m.GetDestinationLabels()) > 0 {
		return nil, errors.New("tap: destination_labels apply to outbound requests only")
	}
	rate := float64(req.GetMaxRps())
	if rate == 0 {
		rate = DefaultMaxRPS
	}
	rate = min(rate, MaxRPS)
	o := &observer{
		dir: m.GetDirection(), method: m.GetMethod(), prefix: m.GetPathPrefix(), authority: m.GetAuthority(),
		events: make(chan event, h.queue), rate: rate, tokens: rate, last: h.now(),
		limit: uint64(req.GetLimit()), limitDone: make(chan struct{}),
	}
	if l := m.GetDestinationLabels(); len(l) > 0 {
		o.labels = make(map[string]string, len(l))
		for k, v := range l {
			o.labels[k] = v
		}
	}
	return o, nil
}

func (o *observer) matches(r *Request) bool {
	if o.dir != tapv1.Direction_DIRECTION_UNSPECIFIED && o.dir != r.Direction {
		return false
	}
	if o.method != "" && o.method != r.Method {
		return false
	}
	if o.prefix != "" && !strings.HasPrefix(r.Path, o.prefix) {
		return false
	}
	if o.authority != "" && o.authority != r.Authority {
		return false
	}
	if len(o.labels) > 0 {
		if r.Direction != tapv1.Direction_OUTBOUND {
			return false
		}
		for k, v := range o.labels {
			if got, ok := r.DestinationLabels[k]; !ok || got != v {
				return false
			}
		}
	}
	return true
}

// admit applies the request limit and the rate limit (a token bucket of
// max_rps tokens refilled at max_rps per second).
func (o *observer) admit(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.limit > 0 && o.admitted >= o.limit {
		return false
	}
	if el := now.Sub(o.last); el > 0 {
		o.tokens = min(o.rate, o.tokens+el.Seconds()*o.rate)
		o.last = now
	}
	if o.tokens < 1 {
		return false
	}
	o.tokens--
	o.admitted++
	return true
}

// finish counts an admitted request's end; the limit-th closes limitDone
// after its response_end was queued.
func (o *observer) finish() {
	if o.limit > 0 && o.finished.Add(1) == o.limit {
		close(o.limitDone)
	}
}

// Server serves conduit.tap.v1.Tap from a Hub.
type Server struct {
	tapv1.UnimplementedTapServer
	hub *Hub
}

// NewServer returns the Tap service of h.
func NewServer(h *Hub) *Server { return &Server{hub: h} }

// Register adds the Tap service to s.
func (s *Server) Register(gs grpc.ServiceRegistrar) { tapv1.RegisterTapServer(gs, s) }

// Observe streams the events of the matching requests until the client
// cancels, the limit is reached or the hub closes.
func (s *Server) Observe(req *tapv1.ObserveRequest, stream grpc.ServerStreamingServer[tapv1.TapEvent]) error {
	h := s.hub
	o, err := h.newObserver(req)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	select {
	case <-h.closed:
		return status.Error(codes.Unavailable, "tap: the proxy is shutting down")
	default:
	}
	if !h.add(o, MaxObservers) {
		return status.Errorf(codes.ResourceExhausted, "tap: this proxy already serves %d tap streams, the most it does at once; retry once one has ended", MaxObservers)
	}
	defer h.remove(o)
	h.log.Debug("tap observer started", "match", req.GetMatch().String(), "max_rps", o.rate, "limit", o.limit)
	defer func() {
		o.mu.Lock()
		n := o.admitted
		o.mu.Unlock()
		h.log.Debug("tap observer ended", "requests", n, "dropped_events", o.dropped.Load())
	}()
	ctx := stream.Context()
	for {
		select {
		case e := <-o.events:
			if err := stream.Send(e.proto()); err != nil {
				return err
			}
		case <-o.limitDone:
			// Every admitted request has ended and its events are queued.
			for {
				select {
				case e := <-o.events:
					if err := stream.Send(e.proto()); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-h.closed:
			return status.Error(codes.Unavailable, "tap: the proxy is shutting down")
		}
	}
}
