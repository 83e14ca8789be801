package injector

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
)

// TestRunWatchesWebhookConfig runs the injector with a periodic check far
// away (1h) and re-creates its MutatingWebhookConfiguration without a
// caBundle, as `kubectl apply` of a fresh install does: the injector's watch
// restores the caBundle within moments. An edit that resets it is repaired
// too. It also checks the Options that controller injector uses: a
// contributor changes the admission response, and the metrics are served
// from the given registry.
func TestRunWatchesWebhookConfig(t *testing.T) {
	client := runClient(t, "29")
	// The watch reactor tells when the injector's watch is open, so that
	// the changes below are not made before it (they would be missed).
	gvr := admissionregistrationv1.SchemeGroupVersion.WithResource("mutatingwebhookconfigurations")
	watching := make(chan struct{}, 10)
	client.PrependWatchReactor("mutatingwebhookconfigurations", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(gvr, a.GetNamespace())
		if err == nil {
			select {
			case watching <- struct{}{}:
			default:
			}
		}
		return true, w, err
	})

	reg := prometheus.NewRegistry()
	addr, admin := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, client, Options{Namespace: "conduit", Addr: addr, AdminAddr: admin, CertCheckInterval: time.Hour,
			Contributors: []PatchContributor{addEnv{}}, Registry: reg}, quietLog())
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()
	waitReady(t, admin)
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("the injector does not watch its MutatingWebhookConfiguration")
	}
	want := caBundle(t, client)
	if len(want) == 0 {
		t.Fatal("caBundle not synced at start")
	}
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	restored := func(what string) {
		t.Helper()
		start := time.Now()
		for !bytes.Equal(caBundle(t, client), want) {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s: caBundle not restored after %s", what, time.Since(start))
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s: caBundle restored in %s", what, time.Since(start))
	}

	// kubectl apply of a fresh install: deleted, then created without a caBundle.
	if err := api.Delete(ctx, WebhookConfigName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	created, err := api.Create(ctx, webhookConfig(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What was created has no caBundle (reading it back could already see
	// the injector's fix: it is that quick).
	if len(created.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Fatal("the re-created configuration already has a caBundle")
	}
	restored("re-created")

	// An edit that resets it (e.g. a chart upgrade).
	mwc, err := api.Get(ctx, WebhookConfigName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mwc.Webhooks[0].ClientConfig.CABundle = []byte("stale")
	if _, err := api.Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	restored("reset")

	// Another configuration is none of the injector's business.
	other := webhookConfig()
	other.Name = "someone-else"
	if _, err := api.Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got, _ := api.Get(ctx, "someone-else", metav1.GetOptions{}); len(got.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Error("the injector wrote the caBundle of another configuration")
	}

	// The contributor of Options changes the admission response.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(want) {
		t.Fatal("bad caBundle")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "conduit-injector.conduit.svc"}}}
	_, out := post(t, hc, "https://"+addr+WebhookPath, review(t, pod(), "emojivoto"))
	if out == nil || out.Response.Patch == nil {
		t.Fatalf("not injected: %+v", out)
	}
	var ops []JSONPatchOp
	if err := json.Unmarshal(out.Response.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	p, err := ApplyPatch(pod(), ops)
	if err != nil {
		t.Fatal(err)
	}
	proxy := p.Spec.InitContainers[1]
	if last := proxy.Env[len(proxy.Env)-1]; proxy.Name != ProxyContainerName || last.Name != "CONDUIT_PROXY_TAP_ENABLED" || last.Value != "true" {
		t.Errorf("the contributor's variable is not in the proxy: %s %+v", proxy.Name, last)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "conduit_injector_admissions_total"
	}
	if !found {
		t.Error("the admissions counter is not in Options.Registry")
	}
}
