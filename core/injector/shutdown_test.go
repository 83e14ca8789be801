package injector

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/procutil"
)

// TestRunServesDuringShutdownDelay: Run under DelayCancel (what
// `controller injector` does) still injects pods after the signal, for the
// delay, then stops.
func TestRunServesDuringShutdownDelay(t *testing.T) {
	client := runClient(t, "32")
	addr, admin := freeAddr(t), freeAddr(t)
	signal, stop := context.WithCancel(context.Background())
	defer stop()
	const delay = 700 * time.Millisecond
	ctx, cancel := procutil.DelayCancel(signal, delay, nil)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, client, Options{Namespace: "conduit", Addr: addr, AdminAddr: admin}, quietLog())
	}()
	waitReady(t, admin)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle(t, client)) {
		t.Fatal("caBundle not synced")
	}
	url := "https://" + addr + WebhookPath
	injects := func() bool {
		// A new connection each time, as the API server's calls after a
		// rollout reach the replica anew.
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "conduit-injector.conduit.svc"}}}
		_, out := post(t, hc, url, review(t, pod(), "emojivoto"))
		return out != nil && out.Response.Patch != nil
	}
	if !injects() {
		t.Fatal("not injected before the signal")
	}
	stop()
	at := time.Now()
	time.Sleep(200 * time.Millisecond)
	if !injects() {
		t.Fatal("not injected during the shutdown delay")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if d := time.Since(at); d < delay {
			t.Errorf("Run returned %s after the signal, want after the %s delay", d, delay)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the delay")
	}
}

// TestRunClosesConnectionsWhenTerminating: once the replica terminates, the
// webhook still injects, but closes each connection after its answer, over
// HTTP/1.1 and HTTP/2 alike, so that a client holding a keep-alive
// connection (the API server) reconnects instead of calling on a connection
// that the end of the shutdown delay will close under it.
func TestRunClosesConnectionsWhenTerminating(t *testing.T) {
	client := runClient(t, "32")
	addr, admin := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	terminating := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, client, Options{Namespace: "conduit", Addr: addr, AdminAddr: admin, Terminating: terminating}, quietLog())
	}()
	defer func() { cancel(); <-done }()
	waitReady(t, admin)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle(t, client)) {
		t.Fatal("caBundle not synced")
	}
	url := "https://" + addr + WebhookPath
	tlsFor := func(proto string) *tls.Config {
		return &tls.Config{RootCAs: pool, ServerName: "conduit-injector.conduit.svc", NextProtos: []string{proto}}
	}
	clients := map[string]*http.Client{
		"HTTP/1.1": {Transport: &http.Transport{TLSClientConfig: tlsFor("http/1.1")}},
		"HTTP/2.0": {Transport: &http.Transport{TLSClientConfig: tlsFor("h2"), ForceAttemptHTTP2: true}},
	}
	// call injects a pod through hc and reports whether it reused a connection.
	call := func(t *testing.T, hc *http.Client, proto string) bool {
		t.Helper()
		var reused bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, url, bytes.NewReader(review(t, pod(), "emojivoto")))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Proto != proto || !bytes.Contains(body, []byte(`"patch"`)) {
			t.Fatalf("status %d over %s, want 200 over %s with a patch: %.200s", resp.StatusCode, resp.Proto, proto, body)
		}
		// Let the client read what follows the answer (HTTP/2: GOAWAY).
		time.Sleep(100 * time.Millisecond)
		return reused
	}
	for proto, hc := range clients {
		call(t, hc, proto)
		if !call(t, hc, proto) {
			t.Fatalf("%s: the second call before terminating did not reuse the connection", proto)
		}
	}
	close(terminating)
	time.Sleep(100 * time.Millisecond)
	for proto, hc := range clients {
		call(t, hc, proto) // on the old connection, or a new one if it was closed idle
		for range 2 {
			if call(t, hc, proto) {
				t.Errorf("%s: a call after terminating reused the connection of the one before", proto)
			}
		}
	}
}
