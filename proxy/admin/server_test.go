package admin

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/metrics"
)

// TestServerTimeouts: the admin port listens on every address of the pod, so
// a client that keeps a connection idle after a request, or starts a PUT
// /proxy-log-level and never finishes its body, must not hold the connection
// (and a file descriptor, shared with the proxy's listeners) for ever.
func TestServerTimeouts(t *testing.T) {
	defer func(h, b, i time.Duration) { readHeaderTimeout, bodyReadTimeout, idleTimeout = h, b, i }(readHeaderTimeout, bodyReadTimeout, idleTimeout)
	readHeaderTimeout, bodyReadTimeout, idleTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond

	srv := NewServer(Handler(Options{Metrics: metrics.New(), LogLevel: new(slog.LevelVar)}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	for _, tc := range []struct {
		name, request string
		wantStatus    int // 0: closed without an answer
	}{
		{"silent after connecting", "", 0},
		{"half a request head", "GET /live HTTP/1.1\r\nHost: x\r\n", 0},
		{"idle keep-alive after a request", "GET /live HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK},
		{"a body that never comes", "PUT /proxy-log-level HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nde", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_ = c.SetDeadline(start.Add(5 * time.Second))
			if _, err := io.WriteString(c, tc.request); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			if tc.wantStatus != 0 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("no response: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
				}
			}
			// Then the server closes the connection.
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("the connection is still open %v later: %v (read %q)", time.Since(start).Round(time.Millisecond), err, rest)
			}
			if tc.wantStatus == 0 && len(rest) > 0 && !strings.HasPrefix(string(rest), "HTTP/1.1 408") {
				t.Errorf("answered %q", rest)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("closed after %v", took)
			}
		})
	}
}
