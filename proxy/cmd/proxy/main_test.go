package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

func TestAwait(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" || !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	if err := await("0.0.0.0:"+port, 300*time.Millisecond); err == nil {
		t.Fatal("await returned before ready")
	}
	go func() { time.Sleep(300 * time.Millisecond); ready.Store(true) }()
	if err := await("0.0.0.0:"+port, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := await("bad", time.Second); err == nil {
		t.Error("bad address accepted")
	}
}

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tests := []struct {
		name string
		env  map[string]string
		want int // GC percent afterwards
		set  bool
	}{
		{"unset: the proxy's default", nil, defaultGOGC, true},
		{"GOGC set: left to the runtime", map[string]string{"GOGC": "50"}, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			_, set := tuneGC(func(k string) string { return tt.env[k] })
			if set != tt.set {
				t.Errorf("set = %v, want %v", set, tt.set)
			}
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Errorf("GC percent %d, want %d", got, tt.want)
			}
		})
	}
}
