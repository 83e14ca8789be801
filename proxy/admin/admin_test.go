package admin

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/conduit-mesh/conduit/proxy/metrics"
)

func TestAdmin(t *testing.T) {
	var ready, shut atomic.Bool
	h := Handler(Options{Metrics: metrics.New(), Ready: ready.Load, Shutdown: func() { shut.Store(true) }})
	do := func(method, path, remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if c := do("GET", "/ready", "127.0.0.1:1").Code; c != 503 {
		t.Errorf("/ready before cert = %d", c)
	}
	ready.Store(true)
	if c := do("GET", "/ready", "127.0.0.1:1").Code; c != 200 {
		t.Errorf("/ready after cert = %d", c)
	}
	if c := do("GET", "/live", "10.0.0.1:1").Code; c != 200 {
		t.Errorf("/live = %d", c)
	}
	if w := do("GET", "/metrics", "10.0.0.1:1"); w.Code != 200 || !strings.Contains(w.Body.String(), "# TYPE request_total counter") || !strings.Contains(w.Body.String(), "process_resident_memory_bytes") {
		t.Errorf("/metrics = %d %s", w.Code, w.Body)
	}
	if c := do("POST", "/shutdown", "10.0.0.1:1").Code; c != 403 || shut.Load() {
		t.Errorf("remote /shutdown = %d, shut=%v", c, shut.Load())
	}
	if c := do("GET", "/shutdown", "127.0.0.1:1").Code; c != 405 || shut.Load() {
		t.Errorf("GET /shutdown = %d", c)
	}
	if c := do("POST", "/shutdown", "[::1]:5").Code; c != 200 {
		t.Errorf("loopback /shutdown = %d", c)
	}
	deadline := time.Now().Add(time.Second)
	for !shut.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !shut.Load() {
		t.Error("shutdown not triggered")
	}
}

func TestIdentityCertificate(t *testing.T) {
	var chain atomic.Pointer[[]byte]
	h := Handler(Options{Metrics: metrics.New(), CertificatePEM: func() []byte {
		if p := chain.Load(); p != nil {
			return *p
		}
		return nil
	}})
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/identity/certificate", nil))
		return w
	}
	if w := get(); w.Code != 503 || !strings.Contains(w.Body.String(), "no certificate yet") {
		t.Errorf("before the certificate: %d %q", w.Code, w.Body)
	}
	pem := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	chain.Store(&pem)
	w := get()
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/x-pem-file" || w.Body.String() != string(pem) {
		t.Errorf("after the certificate: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/identity/certificate", nil))
	if w.Code != 405 {
		t.Errorf("POST /identity/certificate = %d", w.Code)
	}
}

// TestProxyLogLevel: GET /proxy-log-level prints the level, PUT from
// loopback changes it (and the change is logged at warn), and a bad level, a
// remote PUT or another method change nothing.
func TestProxyLogLevel(t *testing.T) {
	lv := new(slog.LevelVar)
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: lv}))
	h := Handler(Options{Metrics: metrics.New(), LogLevel: lv, Log: log})
	for _, tc := range []struct {
		method, remote, body string
		code                 int
		answer               string // substring of the body
		level                slog.Level
	}{
		{"GET", "10.0.0.1:1", "", 200, "info\n", slog.LevelInfo},
		{"PUT", "127.0.0.1:1", "debug", 200, "debug\n", slog.LevelDebug},
		{"GET", "10.0.0.1:1", "", 200, "debug\n", slog.LevelDebug},
		{"PUT", "[::1]:1", " WARN\n", 200, "warn\n", slog.LevelWarn},
		{"PUT", "10.0.0.1:1", "debug", 403, "only be changed from loopback", slog.LevelWarn},
		{"PUT", "127.0.0.1:1", "verbose", 400, `invalid level "verbose" (accepted: debug, info, warn, error)`, slog.LevelWarn},
		{"PUT", "127.0.0.1:1", "", 400, `invalid level ""`, slog.LevelWarn},
		{"POST", "127.0.0.1:1", "debug", 405, "use GET or PUT", slog.LevelWarn},
		{"PUT", "127.0.0.1:1", "error", 200, "error\n", slog.LevelError},
	} {
		r := httptest.NewRequest(tc.method, "/proxy-log-level", strings.NewReader(tc.body))
		r.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.answer) || lv.Level() != tc.level {
			t.Errorf("%s %q from %s: %d %q, level %v; want %d %q, level %v", tc.method, tc.body, tc.remote, w.Code, w.Body, lv.Level(), tc.code, tc.answer, tc.level)
		}
	}
	for _, want := range []string{"from=info to=debug", "from=debug to=warn", "from=warn to=error"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logged.String())
		}
	}
	// Without a LevelVar, the endpoint does not exist.
	w := httptest.NewRecorder()
	Handler(Options{Metrics: metrics.New()}).ServeHTTP(w, httptest.NewRequest("GET", "/proxy-log-level", nil))
	if w.Code != 404 {
		t.Errorf("GET /proxy-log-level without a LevelVar: %d", w.Code)
	}
}

// TestReadyWithCertificateExpiry: /ready is 503 until the first
// certificate, then 200, and stays 200 once the certificate has expired
// (see docs/proxy.md, Identity) with a warning in its body;
// identity_cert_expiration_timestamp_seconds says when it expires.
func TestReadyWithCertificateExpiry(t *testing.T) {
	valid := time.Now().Add(time.Hour).Truncate(time.Second)
	expired := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, tc := range []struct {
		name       string
		ready      bool
		expiry     func() time.Time
		code       int
		body       string // the whole body, or "" to skip
		warning    bool
		metricLine string // "" when the gauge must be absent
	}{
		{"no certificate yet", false, func() time.Time { return time.Time{} }, 503, "not ready: no certificate yet\n", false, ""},
		{"valid certificate", true, func() time.Time { return valid }, 200, "ready\n", false,
			fmt.Sprintf("identity_cert_expiration_timestamp_seconds %d\n", valid.Unix())},
		{"expired certificate", true, func() time.Time { return expired }, 200, "", true,
			fmt.Sprintf("identity_cert_expiration_timestamp_seconds %d\n", expired.Unix())},
		{"no identity", true, nil, 200, "ready\n", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Handler(Options{Metrics: metrics.New(), Ready: func() bool { return tc.ready }, CertExpiry: tc.expiry})
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/ready", nil))
			if w.Code != tc.code {
				t.Errorf("/ready = %d, want %d", w.Code, tc.code)
			}
			if tc.body != "" && w.Body.String() != tc.body {
				t.Errorf("/ready body %q, want %q", w.Body, tc.body)
			}
			if got := strings.Contains(w.Body.String(), "warning: the certificate expired at "+expired.UTC().Format(time.RFC3339)); got != tc.warning {
				t.Errorf("/ready body %q: warning about the expired certificate = %v, want %v", w.Body, got, tc.warning)
			}
			w = httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
			out := w.Body.String()
			if tc.metricLine == "" {
				if strings.Contains(out, "identity_cert_expiration_timestamp_seconds") {
					t.Errorf("/metrics has identity_cert_expiration_timestamp_seconds without a certificate:\n%s", out)
				}
				return
			}
			if !strings.Contains(out, "# TYPE identity_cert_expiration_timestamp_seconds gauge\n") || !strings.Contains(out, "\n"+tc.metricLine) {
				t.Errorf("/metrics lacks %q:\n%s", tc.metricLine, out)
			}
			if _, err := promlint.New(strings.NewReader(out)).Lint(); err != nil {
				t.Errorf("/metrics does not parse: %v", err)
			}
		})
	}
}

func TestDiscoveryMetrics(t *testing.T) {
	tests := []struct {
		name   string
		status func() (bool, int, int)
		want   []string
		absent []string
	}{
		{"reachable", func() (bool, int, int) { return false, 0, 0 },
			[]string{"discovery_unreachable 0\n", `discovery_stale{kind="endpoints"} 0` + "\n", `discovery_stale{kind="profile"} 0` + "\n"}, nil},
		{"unreachable", func() (bool, int, int) { return true, 3, 2 },
			[]string{"# TYPE discovery_unreachable gauge\n", "discovery_unreachable 1\n", `discovery_stale{kind="endpoints"} 3` + "\n", `discovery_stale{kind="profile"} 2` + "\n"}, nil},
		{"no discovery client", nil, nil, []string{"discovery_"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Handler(Options{Metrics: metrics.New(), Discovery: tt.status})
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
			body := w.Body.String()
			for _, s := range tt.want {
				if !strings.Contains(body, s) {
					t.Errorf("/metrics has no %q:\n%s", s, body)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(body, s) {
					t.Errorf("/metrics has %q:\n%s", s, body)
				}
			}
		})
	}
}
