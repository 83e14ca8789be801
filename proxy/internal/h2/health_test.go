package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"

	"github.com/conduit-mesh/conduit/pkg/grpcecho"
)

// TestHealthCheck plays servers that answer a request's HEADERS and then
// send nothing more on its stream unless a PING prompts them, and counts
// the PINGs the client sends while the response stays open.
func TestHealthCheck(t *testing.T) {
	const timeout = 50 * time.Millisecond
	const watch = 700 * time.Millisecond
	for _, tc := range []struct {
		name    string
		ack     bool          // the server answers PINGs
		data    bool          // and sends DATA after each ACK
		before  bool          // and sends DATA before each ACK
		minPing time.Duration // Client.MinPingInterval
		// PINGs sent while watched
		min, max int64
		// the response body fails with this, within watch
		err string
	}{
		// A peer that never answers is given up after about 2×PingTimeout
		// of quiet.
		{name: "unanswered", err: "PING unanswered", min: 1, max: 1},
		// A quiet stream is pinged once; another would be a strike
		// against a gRPC server's policy.
		{name: "answered", ack: true, min: 1, max: 1},
		// ... and again once MinPingInterval has passed.
		{name: "answered, short interval", ack: true, minPing: 200 * time.Millisecond, min: 2, max: 5},
		// DATA written after the server answered the last PING lets the
		// next one go after PingTimeout ...
		{name: "answered, then data", ack: true, data: true, min: 4, max: 14},
		// ... but not DATA it wrote before: a gRPC server's strike count
		// was reset by it for the PING already answered.
		{name: "data, then answered", ack: true, before: true, min: 1, max: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pings atomic.Int64
			addr := serveScript(t, nil, func(fr *http2.Framer, f http2.Frame) {
				switch f := f.(type) {
				case *http2.HeadersFrame:
					var hb bytes.Buffer
					enc := hpack.NewEncoder(&hb)
					_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true})
				case *http2.PingFrame:
					if f.IsAck() {
						return
					}
					pings.Add(1)
					if tc.before {
						_ = fr.WriteData(1, false, []byte("tick"))
					}
					if tc.ack {
						_ = fr.WritePing(true, f.Data)
					}
					if tc.data {
						_ = fr.WriteData(1, false, []byte("tick"))
					}
				}
			})
			cl := clientTo(t, addr)
			cl.PingTimeout, cl.MinPingInterval = timeout, tc.minPing
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc/watch", nil)
			resp, err := cl.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			done := readAll(resp.Body)
			var got error
			select {
			case got = <-done:
				if got == nil {
					t.Fatal("the response ended; the server never ended it")
				}
			case <-time.After(watch):
			}
			n := pings.Load()
			switch {
			case tc.err == "" && got != nil:
				t.Errorf("the response failed: %v", got)
			case tc.err != "" && got == nil:
				t.Errorf("the response was still open after %v, want it failed with %q", watch, tc.err)
			case tc.err != "" && !strings.Contains(got.Error(), tc.err):
				t.Errorf("the response failed with %v, want %q", got, tc.err)
			}
			if n < tc.min || n > tc.max {
				t.Errorf("%d PINGs in %v with PingTimeout %v, want %d to %d", n, watch, timeout, tc.min, tc.max)
			}
		})
	}
}

// TestHealthCheckKeepsGRPCStream: a full-duplex gRPC call on which nothing
// moves, to a grpc-go server with its default keepalive policy, stays open
// through many PingTimeouts, and then ends with its status. A client that
// pinged it every PingTimeout would have been sent GOAWAY "too_many_pings"
// after the fourth PING, and the call failed.
func TestHealthCheckKeepsGRPCStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	grpcecho.Register(srv, "pod-0")
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	cl := clientTo(t, ln.Addr().String())
	cl.PingTimeout = 50 * time.Millisecond
	body, end := io.Pipe()
	req, _ := http.NewRequest("POST", "http://svc/grpc.testing.TestService/FullDuplexCall", body)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := cl.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	done := readAll(resp.Body)
	select {
	case err := <-done:
		t.Fatalf("the quiet call ended early: %v (trailer %v)", err, resp.Trailer)
	case <-time.After(1500 * time.Millisecond): // 30 PingTimeouts
	}
	_ = end.Close() // the client's half-close: the server ends the call
	select {
	case err := <-done:
		if err != nil || resp.Trailer.Get("Grpc-Status") != "0" {
			t.Fatalf("the call ended with %v, grpc-status %q, want 0", err, resp.Trailer.Get("Grpc-Status"))
		}
	case <-time.After(wait):
		t.Fatal("the call did not end after the client's half-close")
	}
}

// readAll reads body to its end in a goroutine of its own and sends what
// ended it (nil for EOF).
func readAll(body io.Reader) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, body)
		done <- err
	}()
	return done
}
