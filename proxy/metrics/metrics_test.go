package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
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
		`tcp_close_total{direction="inbound",peer="src",tls="true",client_id="c.ns",classification="success"} 1`,
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

// TestAuthorityBounded: the authority label comes from the client's Host;
// random or malformed ones must neither grow the series without bound nor
// make the exposition unreadable, and every request is still counted.
func TestAuthorityBounded(t *testing.T) {
	tests := []struct {
		name  string
		auths []string // requests, in order, on the inbound side
		want  map[string]int
	}{
		{name: "distinct authorities", auths: []string{"web:80", "web.ns:80", "web:80"},
			want: map[string]int{"web:80": 2, "web.ns:80": 1}},
		{name: "not UTF-8", auths: []string{"web:80", "bad\xff:80", "bad\xfe:80"},
			want: map[string]int{"web:80": 1, OverflowAuthority: 2}},
		{name: "longer than a host name", auths: []string{strings.Repeat("a", 300), "web:80"},
			want: map[string]int{"web:80": 1, OverflowAuthority: 1}},
		{name: "random hosts past the limit", auths: randomHosts(MaxAuthorities + 500),
			want: map[string]int{"h0": 1, fmt.Sprintf("h%d", MaxAuthorities-1): 1, OverflowAuthority: 500}},
		{name: "known authority after the limit", auths: append(append([]string{"web:80"}, randomHosts(MaxAuthorities+5)...), "web:80"),
			want: map[string]int{"web:80": 2, OverflowAuthority: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			for _, a := range tt.auths {
				k := RequestKey{Direction: "inbound", Authority: a}
				r.Request(k)
				r.Response(k, 200, false, time.Millisecond)
			}
			var buf bytes.Buffer
			if _, err := r.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			if len(tt.auths) <= 10 { // the linter is quadratic
				if _, err := promlint.New(bytes.NewReader(buf.Bytes())).Lint(); err != nil {
					t.Fatalf("exposition does not parse: %v", err)
				}
			}
			var series, total int
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.HasPrefix(l, "request_total{") {
					series++
					var n int
					_, _ = fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &n)
					total += n
				}
			}
			if series > MaxAuthorities+1 {
				t.Errorf("%d request_total series, want at most %d", series, MaxAuthorities+1)
			}
			if total != len(tt.auths) {
				t.Errorf("request_total sums to %d, want %d", total, len(tt.auths))
			}
			for a, n := range tt.want {
				l := `direction="inbound",authority="` + a + `",route="",tls="false"`
				if want := fmt.Sprintf("request_total{%s} %d\n", l, n); !strings.Contains(buf.String(), want) {
					t.Errorf("exposition lacks %q", want)
				}
				if want := fmt.Sprintf("response_total{%s,classification=\"success\",status_code=\"200\"} %d\n", l, n); !strings.Contains(buf.String(), want) {
					t.Errorf("exposition lacks %q", want)
				}
			}
		})
	}
}

// TestTCPCloseClassification: tcp_close_total says whether a connection
// ended cleanly and, for a failure, with which of a few errnos (Linkerd's
// classification and errno labels).
func TestTCPCloseClassification(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	tests := []struct {
		name string
		errs []error // one closed connection each
		want []string
	}{
		{name: "clean ends", errs: []error{nil, io.EOF, fmt.Errorf("h1: read response: %w", io.EOF)},
			want: []string{`classification="success"} 3`}},
		{name: "the proxy's own close and deadlines", errs: []error{net.ErrClosed, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}},
			want: []string{`classification="success"} 2`}},
		{name: "reset by the peer", errs: []error{reset, fmt.Errorf("h1: send request: %w", reset)},
			want: []string{`classification="success"} 0`, `classification="failure",errno="ECONNRESET"} 2`}},
		{name: "broken pipe and timeout", errs: []error{syscall.EPIPE, syscall.ETIMEDOUT},
			want: []string{`classification="success"} 0`, `classification="failure",errno="EPIPE"} 1`, `classification="failure",errno="ETIMEDOUT"} 1`}},
		{name: "failure without a known errno", errs: []error{errors.New("tls: bad record MAC"), syscall.EIO},
			want: []string{`classification="success"} 0`, `classification="failure"} 2`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			k := TCPKey{Direction: "inbound", Peer: "dst"}
			for _, err := range tt.errs {
				r.Open(k).CloseErr(err)
			}
			var buf bytes.Buffer
			if _, err := r.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			if _, err := promlint.New(bytes.NewReader(buf.Bytes())).Lint(); err != nil {
				t.Fatalf("exposition does not parse: %v", err)
			}
			var lines []string
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.HasPrefix(l, "tcp_close_total{") {
					lines = append(lines, l)
				}
			}
			if len(lines) != len(tt.want) {
				t.Errorf("tcp_close_total series:\n%s\nwant %d", strings.Join(lines, "\n"), len(tt.want))
			}
			for _, w := range tt.want {
				if want := `tcp_close_total{direction="inbound",peer="dst",tls="false",` + w; !strings.Contains(buf.String(), want+"\n") {
					t.Errorf("exposition lacks %s", want)
				}
			}
			if want := `tcp_open_connections{direction="inbound",peer="dst",tls="false"} 0`; !strings.Contains(buf.String(), want) {
				t.Errorf("exposition lacks %s", want)
			}
		})
	}
}

func randomHosts(n int) []string {
	hs := make([]string, n)
	for i := range hs {
		hs[i] = fmt.Sprintf("h%d", i)
	}
	return hs
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
