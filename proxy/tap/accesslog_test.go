package tap

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
	"github.com/conduit-mesh/conduit/proxy/internal/logtest"
)

// syncBuffer is the access log's destination, read while its goroutine
// writes; a test holds its writes with hold.
type syncBuffer struct {
	hold sync.Mutex
	logtest.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.hold.Lock()
	defer s.hold.Unlock()
	return s.Buffer.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestAccessLog: every request gets one line when its response ends, with
// its fields, whoever else observes; a request without a response says why;
// Close writes what is queued; after it, nothing is observed.
func TestAccessLog(t *testing.T) {
	h := NewHub(Options{})
	var buf syncBuffer
	a := h.StartAccessLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	if !h.Observing() {
		t.Fatal("the hub does not observe with the access log on")
	}
	// Far above tap's default rate limit: the access log has none.
	const n = 300
	for i := 0; i < n; i++ {
		tp := h.Start(Request{Direction: tapv1.Direction_OUTBOUND, Source: "10.0.0.1:5000", Destination: "10.0.0.2:8080",
			TLS: true, ServerID: "web.ns.serviceaccount.identity.conduit.cluster.local", Method: "GET", Scheme: "http",
			Authority: "web.ns.svc.cluster.local:8080", Path: "/books", Route: "GET /books"})
		tp.Response(200)
		time.Sleep(10 * time.Microsecond)
		tp.End(1234, "", false, nil)
	}
	in := h.Start(Request{Direction: tapv1.Direction_INBOUND, Source: "10.0.0.3:4000", Destination: "10.0.0.2:8080",
		TLS: true, ClientID: "client.ns.serviceaccount.identity.conduit.cluster.local", Method: "POST", Authority: "web:8080", Path: "/grpc.Svc/Call"})
	in.Response(200)
	in.End(5, "14", true, nil)
	h.Start(Request{Direction: tapv1.Direction_OUTBOUND, Method: "GET", Authority: "gone:80", Path: "/"}).Fail(errors.New("connect: connection refused"))
	a.Close()
	if h.Observing() {
		t.Error("the hub still observes after the access log's Close")
	}

	lines := buf.lines(t)
	if len(lines) != n+2 {
		t.Fatalf("%d lines, want %d", len(lines), n+2)
	}
	first := lines[0]
	want := map[string]any{"msg": "access", "level": "INFO", "direction": "outbound", "server_id": "web.ns.serviceaccount.identity.conduit.cluster.local",
		"source": "10.0.0.1:5000", "destination": "10.0.0.2:8080", "tls": true, "method": "GET", "authority": "web.ns.svc.cluster.local:8080",
		"path": "/books", "route": "GET /books", "status": 200.0, "response_bytes": 1234.0, "failure": false}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("outbound line: %s = %v, want %v (%v)", k, first[k], v, first)
		}
	}
	if d, ok := first["duration_ms"].(float64); !ok || d <= 0 || d > 1000 {
		t.Errorf("duration_ms %v", first["duration_ms"])
	}
	if _, err := time.Parse(time.RFC3339Nano, first["start"].(string)); err != nil {
		t.Errorf("start %v: %v", first["start"], err)
	}
	if _, ok := first["grpc_status"]; ok {
		t.Errorf("an HTTP response has a grpc_status: %v", first)
	}
	grpc := lines[n]
	if grpc["direction"] != "inbound" || grpc["client_id"] != "client.ns.serviceaccount.identity.conduit.cluster.local" || grpc["grpc_status"] != 14.0 || grpc["failure"] != true {
		t.Errorf("inbound gRPC line: %v", grpc)
	}
	failed := lines[n+1]
	if failed["status"] != 0.0 || failed["error"] != "connect: connection refused" || failed["failure"] != true {
		t.Errorf("failed request line: %v", failed)
	}
	// Closed: a request now is not observed, and Close again returns.
	if tp := h.Start(Request{Method: "GET"}); tp != nil {
		t.Error("a request was observed after Close")
	}
	a.Close()
}

// TestAccessLogQueueFull: the data path never blocks; what the full queue
// dropped is said in the log.
func TestAccessLogQueueFull(t *testing.T) {
	h := NewHub(Options{})
	var buf syncBuffer
	a := h.StartAccessLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	// Fill the queue faster than anything drains it: the consumer is
	// blocked on the buffer's lock meanwhile.
	buf.hold.Lock()
	for i := 0; i < AccessLogQueue; i++ {
		h.Start(Request{Method: "GET"}).End(0, "", false, nil)
	}
	buf.hold.Unlock()
	a.Close()
	var dropped float64
	for _, l := range buf.lines(t) {
		if l["msg"] == "access log queue full: events dropped" {
			dropped = l["total"].(float64)
		}
	}
	if dropped == 0 {
		t.Fatalf("%d events queued for a queue of %d, and no drop reported", 2*AccessLogQueue, AccessLogQueue)
	}
}
