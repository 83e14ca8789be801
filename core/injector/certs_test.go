package injector

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

func getSecret(t *testing.T, c *fake.Clientset) *corev1.Secret {
	t.Helper()
	s, err := c.CoreV1().Secrets("conduit").Get(context.Background(), TLSSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func caBundle(t *testing.T, c *fake.Clientset) []byte {
	t.Helper()
	m, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), WebhookConfigName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Webhooks[0].ClientConfig.CABundle
}

func served(t *testing.T, m *CertManager) *x509.Certificate {
	t.Helper()
	c, err := m.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// externalSecret is a Secret as cert-manager would write it.
func externalSecret(t *testing.T, name string, validity time.Duration) *corev1.Secret {
	t.Helper()
	root, err := pki.NewRoot("external-ca", 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	leaf, err := root.SignLeaf(name, key.Public(), validity)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.KeyPEM(key)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: TLSSecretName, Namespace: "conduit"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": pki.CertPEM(leaf), "tls.key": keyPEM, "ca.crt": pki.CertPEM(root.Cert)},
	}
}

func TestCertManagerGeneratesAndSyncs(t *testing.T) {
	client := fake.NewClientset(webhookConfig())
	m := &CertManager{Client: client, Namespace: "conduit", Log: quietLog()}
	if m.Ready() {
		t.Fatal("ready before any certificate")
	}
	if err := m.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	sec := getSecret(t, client)
	if sec.Type != corev1.SecretTypeTLS || len(sec.Data["ca.crt"]) == 0 {
		t.Fatalf("generated Secret: type %s, keys %d", sec.Type, len(sec.Data))
	}
	if !bytes.Equal(caBundle(t, client), sec.Data["ca.crt"]) {
		t.Error("caBundle not synced with ca.crt")
	}
	leaf := served(t, m)
	if err := leaf.VerifyHostname("conduit-injector.conduit.svc"); err != nil {
		t.Error(err)
	}
	// Nothing to do the second time: same certificate, no write.
	rv := sec.ResourceVersion
	if err := m.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if getSecret(t, client).ResourceVersion != rv || !served(t, m).Equal(leaf) {
		t.Error("a valid certificate was replaced")
	}
	// Someone resets the caBundle (e.g. a chart upgrade): restored.
	mwc := webhookConfig()
	mwc.Webhooks[0].ClientConfig.CABundle = []byte("stale")
	if _, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(context.Background(), mwc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBundle(t, client), sec.Data["ca.crt"]) {
		t.Error("caBundle not restored")
	}
}

func TestCertManagerRenews(t *testing.T) {
	for _, tc := range []struct {
		name     string
		secret   *corev1.Secret
		now      time.Time
		replaced bool
	}{
		{"valid external certificate is kept", externalSecret(t, "conduit-injector.conduit.svc", 90*24*time.Hour), time.Now(), false},
		{"expiring within 30 days", externalSecret(t, "conduit-injector.conduit.svc", 20*24*time.Hour), time.Now(), true},
		{"clock past renewal", externalSecret(t, "conduit-injector.conduit.svc", 90*24*time.Hour), time.Now().Add(70 * 24 * time.Hour), true},
		{"wrong name", externalSecret(t, "other.conduit.svc", 90*24*time.Hour), time.Now(), true},
		{"missing ca.crt", func() *corev1.Secret {
			s := externalSecret(t, "conduit-injector.conduit.svc", 90*24*time.Hour)
			delete(s.Data, "ca.crt")
			return s
		}(), time.Now(), true},
		{"opaque type is replaced by kubernetes.io/tls", &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: TLSSecretName, Namespace: "conduit"}, Type: corev1.SecretTypeOpaque}, time.Now(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(webhookConfig(), tc.secret)
			m := &CertManager{Client: client, Namespace: "conduit", Log: quietLog(), Now: func() time.Time { return tc.now }}
			if err := m.Reconcile(context.Background()); err != nil {
				t.Fatal(err)
			}
			sec := getSecret(t, client)
			replaced := !bytes.Equal(sec.Data["tls.crt"], tc.secret.Data["tls.crt"])
			if replaced != tc.replaced {
				t.Errorf("replaced = %v, want %v", replaced, tc.replaced)
			}
			if sec.Type != corev1.SecretTypeTLS {
				t.Errorf("type %s", sec.Type)
			}
			if !bytes.Equal(caBundle(t, client), sec.Data["ca.crt"]) {
				t.Error("caBundle not synced")
			}
			// The served certificate is the Secret's.
			if got := pki.CertPEM(served(t, m)); !bytes.Equal(got, sec.Data["tls.crt"]) {
				t.Error("served certificate differs from the Secret")
			}
		})
	}
}

// TestCertManagerHotReload: the TLS config serves the new certificate
// after a renewal, without a restart.
func TestCertManagerHotReload(t *testing.T) {
	now := time.Now()
	client := fake.NewClientset(webhookConfig())
	m := &CertManager{Client: client, Namespace: "conduit", Log: quietLog(), Now: func() time.Time { return now }}
	if err := m.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := served(t, m)
	now = now.Add(340 * 24 * time.Hour) // within 30 days of the 1-year expiry
	if err := m.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if served(t, m).Equal(first) {
		t.Error("certificate not renewed")
	}
}

func TestCertManagerWithoutWebhookConfiguration(t *testing.T) {
	client := fake.NewClientset()
	m := &CertManager{Client: client, Namespace: "conduit", Log: quietLog()}
	if err := m.Reconcile(context.Background()); err != nil {
		t.Fatalf("a missing webhook configuration must not fail: %v", err)
	}
	if !m.Ready() {
		t.Error("not ready")
	}
}
