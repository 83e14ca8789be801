package destination

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
)

// annotator marks the endpoints of the pods it sees.
type annotator struct{}

func (annotator) Annotate(_ context.Context, wa *pb.WeightedAddr, p *corev1.Pod) {
	if wa.Metadata == nil {
		wa.Metadata = map[string]string{}
	}
	wa.Metadata["example.conduit.dev/app"] = p.Labels["app"]
}

func TestEndpointAnnotators(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Annotators = []EndpointAnnotator{annotator{}} }, readFixture(t, "cluster.yaml"))
	s, _, _ := e.get(t, "web.emojivoto.svc.cluster.local:80")
	for _, a := range s.next(t).GetAdd().GetAddrs() {
		if a.Metadata["example.conduit.dev/app"] != "web" {
			t.Errorf("%s: metadata %v", addrKey(a.Addr), a.Metadata)
		}
	}
}

func TestAnnotationsChangeHints(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	tests := []struct {
		name, doc, auth, want string
	}{
		{"service opaque-ports applies to the service port", `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: emojivoto
  annotations: {config.conduit.dev/opaque-ports: "80"}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
`, "web.emojivoto.svc.cluster.local:80", "add 10.0.0.1:8080/opaque:4143/web.emojivoto 10.0.0.2:8080/opaque:4143/web.emojivoto"},
		{"skip-inbound-ports drops identity and hint", `apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: emojivoto
  labels: {app: db, conduit.dev/control-plane-ns: conduit}
  annotations: {config.conduit.dev/skip-inbound-ports: "5432"}
spec:
  serviceAccountName: db
  containers: [{name: pg}]
status:
  phase: Running
  podIP: 10.0.1.1
  podIPs: [{ip: 10.0.1.1}]
`, "db-0.db.emojivoto.svc.cluster.local:5432", "add 10.0.1.1:5432"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.apply(t, tc.doc)
			deadline := time.Now().Add(5 * time.Second)
			for {
				s, _, cancel := e.get(t, tc.auth)
				got := summary(s.next(t))
				cancel()
				if got == tc.want {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("got %s, want %s", got, tc.want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestNodeZoneChange(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s, _, _ := e.get(t, "10.0.0.1:8080")
	if z := s.next(t).GetAdd().GetAddrs()[0].MetricLabels["zone"]; z != "zone-a" {
		t.Fatalf("zone = %q", z)
	}
	e.apply(t, `apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {topology.kubernetes.io/zone: zone-c}
`)
	if z := s.next(t).GetAdd().GetAddrs()[0].MetricLabels["zone"]; z != "zone-c" {
		t.Fatalf("zone after the node moved = %q", z)
	}
}

func TestDrainEndsStreams(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s, errc, _ := e.get(t, "web.emojivoto.svc.cluster.local:80")
	_ = s.next(t)
	e.srv.Drain()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("a drained stream ends cleanly, got %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the stream did not end on Drain")
	}
	// A new stream after the drain ends at once, after its snapshot.
	s2, errc2, _ := e.get(t, "web.emojivoto.svc.cluster.local:80")
	_ = s2.next(t)
	select {
	case <-errc2:
	case <-time.After(2 * time.Second):
		t.Fatal("a stream opened while draining did not end")
	}
}

func TestAdminHandler(t *testing.T) {
	ready := false
	h := AdminHandler(func() bool { return ready }, prometheus.NewRegistry())
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	for _, tc := range []struct {
		path  string
		ready bool
		want  int
	}{
		{"/live", false, 200},
		{"/ready", false, 503},
		{"/ready", true, 200},
		{"/metrics", false, 200},
		{"/nope", true, 404},
	} {
		ready = tc.ready
		if got := get(tc.path); got != tc.want {
			t.Errorf("%s (ready=%t) = %d, want %d", tc.path, tc.ready, got, tc.want)
		}
	}
}
