package injector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// runClient is a fake API server for Run: the webhook configuration, an
// annotated namespace emojivoto, the trust roots, Kubernetes 1.<minor>, and
// objs.
func runClient(t *testing.T, minor string, objs ...runtime.Object) *fake.Clientset {
	t.Helper()
	pem, err := os.ReadFile("testdata/trust-anchors.pem")
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(append([]runtime.Object{
		webhookConfig(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "emojivoto", Annotations: nsEnabled}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TrustRootsName, Namespace: "conduit"}, Data: map[string]string{TrustRootsKey: string(pem)}},
	}, objs...)...)
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{Major: "1", Minor: minor}
	return client
}

// waitReady waits until the admin server at admin says /ready.
func waitReady(t *testing.T, admin string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
	}
}

// TestRun starts the whole injector against a fake API: it generates its
// certificate, syncs the caBundle, becomes ready, injects a pod with the
// configuration of conduit-config, applies a change of conduit-config to
// the next pod without a restart, and drains on cancel.
func TestRun(t *testing.T) {
	client := runClient(t, "28",
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "conduit"}, Data: map[string]string{ConfigMapKey: "version: v1.0.0"}})
	addr, admin := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, client, Options{Namespace: "conduit", Addr: addr, AdminAddr: admin}, quietLog())
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
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle(t, client)) {
		t.Fatal("caBundle not synced")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "conduit-injector.conduit.svc"}}}
	url := "https://" + addr + WebhookPath

	proxyImage := func() string {
		_, out := post(t, hc, url, review(t, pod(), "emojivoto"))
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
		// Kubernetes 1.28: the fallback, a regular container first.
		if p.Spec.Containers[0].Name != ProxyContainerName {
			t.Fatalf("want the proxy as the first container on 1.28: %v", names(p.Spec.Containers))
		}
		return p.Spec.Containers[0].Image
	}
	if got := proxyImage(); got != "localhost/conduit/proxy:v1.0.0" {
		t.Errorf("image %s, want the version of conduit-config", got)
	}
	upd := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "conduit"}, Data: map[string]string{ConfigMapKey: "version: v1.1.0"}}
	if _, err := client.CoreV1().ConfigMaps("conduit").Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := proxyImage()
		if strings.HasSuffix(got, ":v1.1.0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("conduit-config change not applied: %s", got)
		}
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var b strings.Builder
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(b.String(), `conduit_injector_admissions_total{result="injected"}`) {
		t.Error("metrics lack the admissions counter")
	}
}
