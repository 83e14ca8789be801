package injector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/procutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
)

// TestRunServesDuringShutdownDelay: Run under DelayCancel (what
// `controller injector` does) still injects pods after the signal, for the
// delay, then stops.
func TestRunServesDuringShutdownDelay(t *testing.T) {
	pem, err := os.ReadFile("testdata/trust-anchors.pem")
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(
		webhookConfig(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "emojivoto", Annotations: nsEnabled}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TrustRootsName, Namespace: "conduit"}, Data: map[string]string{TrustRootsKey: string(pem)}},
	)
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{Major: "1", Minor: "32"}
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
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
	}
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
