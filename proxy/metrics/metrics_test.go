package metrics

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestExposition(t *testing.T) {
	r := New()
	k := RequestKey{Direction: "outbound", Authority: "web.ns.svc.cluster.local:80", Route: "GET /", TLS: true,
		PeerID: "web.ns.serviceaccount.identity.conduit.cluster.local", PeerLabels: Labels("dst_", map[string]string{"pod": "web-0", "namespace": "ns"})}
	r.Request(k)
	r.Request(k)
	r.Response(k, 200, false, 3*time.Millisecond)
	r.Response(k, 503, true, 70*time.Millisecond)
	in := RequestKey{Direction: "inbound", Authority: `we"ird`, PeerID: "c.ns"}
	r.Request(in)
	tc := r.Open(TCPKey{Direction: "inbound", Peer: "src", TLS: true, PeerID: "c.ns"})
	tc.Read(10)
	tc.Write(20)
	r.Open(TCPKey{Direction: "inbound", Peer: "src", TLS: true, PeerID: "c.ns"}).Close()
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	labels := `direction="outbound",authority="web.ns.svc.cluster.local:80",route="GET /",tls="true",server_id="web.ns.serviceaccount.identity.conduit.cluster.local",dst_namespace="ns",dst_pod="web-0"`
	for _, want := range []string{
		"# TYPE request_total counter",
		"request_total{" + labels + "} 2",
		"response_total{" + labels + `,classification="success",status_code="200"} 1`,
		"response_total{" + labels + `,classification="failure",status_code="503"} 1`,
		"response_latency_ms_bucket{" + labels + `,classification="success",status_code="200",le="3"} 1`,
		"response_latency_ms_bucket{" + labels + `,classification="success",status_code="200",le="2"} 0`,
		"response_latency_ms_bucket{" + labels + `,classification="failure",status_code="503",le="100"} 1`,
		"response_latency_ms_count{" + labels + `,classification="failure",status_code="503"} 1`,
		`request_total{direction="inbound",authority="we\"ird",route="",tls="false",client_id="c.ns"} 1`,
		`tcp_open_total{direction="inbound",peer="src",tls="true",client_id="c.ns"} 2`,
		`tcp_close_total{direction="inbound",peer="src",tls="true",client_id="c.ns"} 1`,
		`tcp_open_connections{direction="inbound",peer="src",tls="true",client_id="c.ns"} 1`,
		`tcp_read_bytes_total{direction="inbound",peer="src",tls="true",client_id="c.ns"} 10`,
		`tcp_write_bytes_total{direction="inbound",peer="src",tls="true",client_id="c.ns"} 20`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	if strings.Contains(out, "le=\"+Inf\"} 0") {
		t.Error("an +Inf bucket is below its count")
	}
}

func TestLabelsSanitize(t *testing.T) {
	got := Labels("dst_", map[string]string{"pod-template-hash": "abc", "a.b": "x\ny"})
	if got != `dst_a_b="x\ny",dst_pod_template_hash="abc"` {
		t.Errorf("got %s", got)
	}
}

func BenchmarkRecord(b *testing.B) {
	r := New()
	k := RequestKey{Direction: "outbound", Authority: "web.ns.svc.cluster.local:80", TLS: true, PeerID: "x", PeerLabels: `dst_pod="p"`}
	b.ReportAllocs()
	for b.Loop() {
		r.Request(k)
		r.Response(k, 200, false, time.Millisecond)
	}
}
