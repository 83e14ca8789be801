package tap

import (
	"context"
	"log/slog"
	"math"
	"time"

	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
)

// AccessLogQueue is how many events the access log may have pending before
// requests go unlogged (counted, and said in the log).
const AccessLogQueue = 8192

// AccessLog writes one line per request the hub sees, when its response
// ends: an observer of every request, without a rate limit, whose events
// are written instead of streamed.
type AccessLog struct {
	hub     *Hub
	o       *observer
	log     *slog.Logger
	stop    chan struct{}
	done    chan struct{}
	pending map[uint64]int // request id -> response status (0: none yet); the consumer's alone
	lost    uint64         // dropped events already reported
}

// StartAccessLog registers the access log on h: from now on every request
// is observed (so the data path takes its observed, slower, paths) and
// written to log, at Info, as "access" with the request's fields. Close
// writes what is queued and stops it.
func (h *Hub) StartAccessLog(log *slog.Logger) *AccessLog {
	o := &observer{events: make(chan event, AccessLogQueue), rate: math.Inf(1), tokens: math.Inf(1), last: h.now()}
	a := &AccessLog{hub: h, o: o, log: log, stop: make(chan struct{}), done: make(chan struct{}), pending: map[uint64]int{}}
	h.add(o, 0) // the access log is always served
	go a.run()
	return a
}

// Close stops observing, writes the lines of the requests already ended and
// returns.
func (a *AccessLog) Close() {
	select {
	case <-a.stop:
	default:
		a.hub.remove(a.o)
		close(a.stop)
	}
	<-a.done
}

func (a *AccessLog) run() {
	defer close(a.done)
	for {
		select {
		case e := <-a.o.events:
			a.write(&e)
		case <-a.stop:
			for {
				select {
				case e := <-a.o.events:
					a.write(&e)
				default:
					a.reportLost()
					return
				}
			}
		}
	}
}

func (a *AccessLog) write(e *event) {
	switch e.kind {
	case kindRequestInit:
		if len(a.pending) >= 4*AccessLogQueue {
			// Ends lost to a full queue: forget their requests.
			clear(a.pending)
		}
		a.pending[e.id] = 0
	case kindResponseInit:
		if _, ok := a.pending[e.id]; ok {
			a.pending[e.id] = e.status
		}
	case kindResponseEnd:
		status, ok := a.pending[e.id]
		if !ok {
			return
		}
		delete(a.pending, e.id)
		r := &e.t.req
		attrs := make([]slog.Attr, 0, 16)
		if r.Direction == tapv1.Direction_INBOUND {
			attrs = append(attrs, slog.String("direction", "inbound"), slog.String("client_id", r.ClientID))
		} else {
			attrs = append(attrs, slog.String("direction", "outbound"), slog.String("server_id", r.ServerID))
		}
		attrs = append(attrs,
			slog.String("source", r.Source), slog.String("destination", r.Destination), slog.Bool("tls", r.TLS),
			slog.String("method", r.Method), slog.String("authority", r.Authority), slog.String("path", r.Path),
			slog.String("route", r.Route), slog.Int("status", status))
		if e.grpcStatus >= 0 {
			attrs = append(attrs, slog.Int64("grpc_status", e.grpcStatus))
		}
		attrs = append(attrs,
			slog.String("start", e.t.at.UTC().Format(time.RFC3339Nano)),
			slog.Float64("duration_ms", float64(e.since.Microseconds())/1000),
			slog.Uint64("response_bytes", e.bytes), slog.Bool("failure", e.failure))
		if e.err != "" {
			attrs = append(attrs, slog.String("error", e.err))
		}
		a.log.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
		a.reportLost()
	}
}

// reportLost says when requests went unlogged because the queue was full.
func (a *AccessLog) reportLost() {
	if n := a.o.dropped.Load(); n > a.lost {
		a.log.LogAttrs(context.Background(), slog.LevelWarn, "access log queue full: events dropped", slog.Uint64("events", n-a.lost), slog.Uint64("total", n))
		a.lost = n
	}
}
