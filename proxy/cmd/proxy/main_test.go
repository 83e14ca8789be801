package main

import (
	"net"
	"net/http"
	"net/http/httptest"
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
