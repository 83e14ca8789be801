package injector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
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
