package metrics

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type endRecord struct {
	calls      int
	bytes      uint64
	grpcStatus string
	failure    bool
	err        error
}

func (e *endRecord) End(bytes uint64, grpcStatus string, failure bool, err error) {
	e.calls++
	e.bytes, e.grpcStatus, e.failure, e.err = bytes, grpcStatus, failure, err
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestBodyOnEnd(t *testing.T) {
	reset := errors.New("stream reset")
	tests := []struct {
		name        string
		status      int
		header      http.Header
		trailer     http.Header
		body        io.Reader
		closeEarly  bool
		wantBytes   uint64
		wantGRPC    string
		wantFailure bool
		wantErr     error
	}{
		{name: "ok at EOF", status: 200, body: strings.NewReader("hello"), wantBytes: 5},
		{name: "5xx", status: 503, body: strings.NewReader("no"), wantBytes: 2, wantFailure: true},
		{name: "grpc ok in trailers", status: 200, trailer: http.Header{"Grpc-Status": {"0"}}, body: strings.NewReader("abc"), wantBytes: 3, wantGRPC: "0"},
		{name: "grpc error in trailers", status: 200, trailer: http.Header{"Grpc-Status": {"14"}}, body: strings.NewReader(""), wantGRPC: "14", wantFailure: true},
		{name: "grpc trailers-only", status: 200, header: http.Header{"Grpc-Status": {"5"}}, body: strings.NewReader(""), wantGRPC: "5", wantFailure: true},
		{name: "stream error", status: 200, body: io.MultiReader(strings.NewReader("par"), failingReader{reset}), wantBytes: 3, wantFailure: true, wantErr: reset},
		{name: "closed before EOF", status: 200, body: strings.NewReader("hello"), closeEarly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: tt.header, Trailer: tt.trailer}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			rec := &endRecord{}
			b := &Body{ReadCloser: io.NopCloser(tt.body), Reg: New(), Key: RequestKey{Direction: "inbound"},
				Start: time.Now(), Resp: resp, OnEnd: rec}
			if !tt.closeEarly {
				_, _ = io.Copy(io.Discard, b)
			}
			_ = b.Close()
			if rec.calls != 1 {
				t.Fatalf("OnEnd called %d times", rec.calls)
			}
			if rec.bytes != tt.wantBytes || rec.grpcStatus != tt.wantGRPC || rec.failure != tt.wantFailure || !errors.Is(rec.err, tt.wantErr) || (tt.wantErr == nil && rec.err != nil) {
				t.Errorf("OnEnd(%d, %q, %v, %v), want (%d, %q, %v, %v)", rec.bytes, rec.grpcStatus, rec.failure, rec.err,
					tt.wantBytes, tt.wantGRPC, tt.wantFailure, tt.wantErr)
			}
		})
	}
}

// rwc is an upgraded connection's body: readable and writable.
type rwc struct {
	io.Reader
	written []byte
}

func (c *rwc) Write(p []byte) (int, error) { c.written = append(c.written, p...); return len(p), nil }
func (c *rwc) Close() error                { return nil }

func TestBodyWritePassesThrough(t *testing.T) {
	up := &rwc{Reader: strings.NewReader("")}
	b := &Body{ReadCloser: up, Reg: New()}
	var _ io.ReadWriteCloser = b
	if n, err := b.Write([]byte("ping")); n != 4 || err != nil || string(up.written) != "ping" {
		t.Fatalf("Write = %d, %v; upstream got %q", n, err, up.written)
	}
	plain := &Body{ReadCloser: io.NopCloser(strings.NewReader("")), Reg: New()}
	if _, err := plain.Write([]byte("x")); err == nil {
		t.Fatal("Write to a read-only body succeeded")
	}
}

// ready is a body that says whether a read would block.
type ready struct {
	io.ReadCloser
	block bool
}

func (r ready) WouldBlock() bool { return r.block }

// TestBodyWouldBlock: the wrapper passes the HTTP/2 fast path's capability
// through, and says a read may block when the body cannot tell.
func TestBodyWouldBlock(t *testing.T) {
	for _, tt := range []struct {
		name string
		body io.ReadCloser
		want bool
	}{
		{"ready body", ready{io.NopCloser(strings.NewReader("x")), false}, false},
		{"waiting body", ready{io.NopCloser(strings.NewReader("")), true}, true},
		{"body that cannot tell", io.NopCloser(strings.NewReader("x")), true},
		// A trailers-only gRPC response (an error status) has no body: the
		// HTTP/2 fast path must end the stream with its HEADERS.
		{"http.NoBody", http.NoBody, false},
	} {
		b := &Body{ReadCloser: tt.body, Reg: New()}
		if got := b.WouldBlock(); got != tt.want {
			t.Errorf("%s: WouldBlock() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestBodyGRPCStatusLabel: as Linkerd's, response_total of a gRPC response
// carries its grpc_status; only gRPC's codes become label values.
func TestBodyGRPCStatusLabel(t *testing.T) {
	const labels = `direction="outbound",authority="a:80",route="",tls="false"`
	tests := []struct {
		name    string
		header  http.Header
		trailer http.Header
		want    string
	}{
		{name: "not gRPC", want: `classification="success",status_code="200"}`},
		{name: "ok in trailers", trailer: http.Header{"Grpc-Status": {"0"}}, want: `classification="success",status_code="200",grpc_status="0"}`},
		{name: "unavailable in trailers", trailer: http.Header{"Grpc-Status": {"14"}}, want: `classification="failure",status_code="200",grpc_status="14"}`},
		{name: "trailers-only", header: http.Header{"Grpc-Status": {"5"}}, want: `classification="failure",status_code="200",grpc_status="5"}`},
		{name: "last code", trailer: http.Header{"Grpc-Status": {"16"}}, want: `classification="failure",status_code="200",grpc_status="16"}`},
		{name: "not a code", trailer: http.Header{"Grpc-Status": {"17"}}, want: `classification="failure",status_code="200"}`},
		{name: "not a number", trailer: http.Header{"Grpc-Status": {"x"}}, want: `classification="failure",status_code="200"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: 200, Header: tt.header, Trailer: tt.trailer}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			reg := New()
			b := &Body{ReadCloser: io.NopCloser(strings.NewReader("x")), Reg: reg,
				Key: RequestKey{Direction: "outbound", Authority: "a:80"}, Start: time.Now(), Resp: resp}
			_, _ = io.Copy(io.Discard, b)
			_ = b.Close()
			var out strings.Builder
			if _, err := reg.WriteTo(&out); err != nil {
				t.Fatal(err)
			}
			if want := "\nresponse_total{" + labels + "," + tt.want + " 1\n"; !strings.Contains(out.String(), want) {
				t.Errorf("exposition lacks %q:\n%s", want, out.String())
			}
		})
	}
}
