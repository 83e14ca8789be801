package h2

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestClientKeepsEarlyAnswer: a server that answers before it has read
// the request body, and then resets the stream with NO_ERROR ("stop
// sending", RFC 9113 8.1) or, with Connection: close, ends the connection,
// has its answer returned although the body was still going out with the
// request's HEADERS (a body whose reads do not block, longer than the
// server's window, so that the round trip itself waits for window to send
// it). Clients must not discard such a response; until 2026-12-07 the
// round trip failed with "h2: write request: h2: stream reset" or
// "connection closed".
func TestClientKeepsEarlyAnswer(t *testing.T) {
	for _, closing := range []bool{false, true} {
		t.Run(map[bool]string{false: "stream reset", true: "connection closed"}[closing], func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if closing {
					w.Header().Set("Connection", "close") // net/http's server then ends the connection
				}
				http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			}))
			srv.Config.Protocols = h2cOnly()
			srv.Start()
			t.Cleanup(srv.Close)
			cl := &Client{Dial: func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
			}}
			const size = 8 << 20
			r, _ := http.NewRequest(http.MethodPut, "http://app/upload", readyBody{strings.NewReader(strings.Repeat("x", size))})
			r.ContentLength = size
			resp, err := cl.RoundTrip(r)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "too large\n" || err != nil {
				t.Fatalf("%d %q, %v; want the server's 413", resp.StatusCode, b, err)
			}
		})
	}
}
