package identity

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
)

const (
	testSecret = "conduit-identity-issuer"
	testCM     = "conduit-identity-trust-roots"
)

func issuerSecret(t *testing.T, p testPKI) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testCPNS},
		Type:       corev1.SecretTypeTLS,
		Data:       p.secretData(t),
	}
}

func anchorsConfigMap(ps ...testPKI) *corev1.ConfigMap {
	var bundle []byte
	for _, p := range ps {
		bundle = append(bundle, pki.CertPEM(p.anchor.Cert)...)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: testCM, Namespace: testCPNS},
		Data:       map[string]string{AnchorBundleKey: string(bundle)},
	}
}

// nextEvent waits for the next recorded event.
func nextEvent(t *testing.T, r *record.FakeRecorder) string {
	t.Helper()
	select {
	case e := <-r.Events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event recorded")
		return ""
	}
}

func noEvent(t *testing.T, r *record.FakeRecorder) {
	t.Helper()
	select {
	case e := <-r.Events:
		t.Fatalf("unexpected event %q", e)
	case <-time.After(300 * time.Millisecond):
	}
}

func waitIssuer(t *testing.T, s *IssuerStore, want *pki.CA) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cur := s.Current(); cur != nil && cur.CA.Cert.Equal(want.Cert) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("issuer %q was not loaded", want.Cert.Subject.CommonName)
}

// TestWatcherAnchorRotation walks the rotate-anchors steps against a fake API
// server: every step that keeps a valid pair swaps the issuer with a Normal
// event, a bad step keeps the last good issuer with a Warning event.
func TestWatcherAnchorRotation(t *testing.T) {
	a, b := newTestPKI(t, "a"), newTestPKI(t, "b")
	client := fake.NewClientset(issuerSecret(t, a), anchorsConfigMap(a))
	rec := record.NewFakeRecorder(20)
	store := &IssuerStore{}
	m := NewMetrics(nil)
	w := &Watcher{Client: client, Namespace: testCPNS, SecretName: testSecret, ConfigMapName: testCM,
		Store: store, Recorder: rec, Metrics: m, Log: discardLog()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	secrets := client.CoreV1().Secrets(testCPNS)
	cms := client.CoreV1().ConfigMaps(testCPNS)

	waitIssuer(t, store, a.issuer)
	if e := nextEvent(t, rec); !strings.HasPrefix(e, "Normal IssuerUpdated") || !strings.Contains(e, `"a issuer"`) {
		t.Fatalf("event %q, want Normal IssuerUpdated for a's issuer", e)
	}

	// A bad step: the issuer of B before B is in the bundle.
	if _, err := secrets.Update(ctx, issuerSecret(t, b), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := nextEvent(t, rec)
	if !strings.HasPrefix(e, "Warning IssuerInvalid") || !strings.Contains(e, "does not chain") || !strings.Contains(e, `keeping the last good issuer "a issuer"`) {
		t.Fatalf("event %q, want Warning IssuerInvalid keeping a's issuer", e)
	}
	if !store.Current().CA.Cert.Equal(a.issuer.Cert) {
		t.Fatal("a bad Secret replaced the issuer")
	}
	if got := testutil.ToFloat64(m.reloads.WithLabelValues("invalid")); got != 1 {
		t.Errorf("reloads{invalid} = %v, want 1", got)
	}

	// Step 1: the bundle becomes A+B; the (still bad) Secret now chains.
	if _, err := cms.Update(ctx, anchorsConfigMap(a, b), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIssuer(t, store, b.issuer)
	if e := nextEvent(t, rec); !strings.HasPrefix(e, "Normal IssuerUpdated") || !strings.Contains(e, "2 trust anchor(s)") {
		t.Fatalf("event %q, want Normal IssuerUpdated with 2 anchors", e)
	}

	// Removing B while its issuer is in use is refused.
	if _, err := cms.Update(ctx, anchorsConfigMap(a), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, rec); !strings.HasPrefix(e, "Warning IssuerInvalid") {
		t.Fatalf("event %q, want Warning IssuerInvalid", e)
	}
	if !store.Current().CA.Cert.Equal(b.issuer.Cert) {
		t.Fatal("a bad bundle replaced the issuer")
	}

	// Step 5: only B remains.
	if _, err := cms.Update(ctx, anchorsConfigMap(b), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, rec); !strings.HasPrefix(e, "Normal IssuerUpdated") || !strings.Contains(e, "1 trust anchor(s)") {
		t.Fatalf("event %q, want Normal IssuerUpdated with 1 anchor", e)
	}
	if n := len(store.Current().Anchors); n != 1 {
		t.Fatalf("%d anchors, want 1", n)
	}

	// An update that changes nothing relevant records nothing.
	s := issuerSecret(t, b)
	s.Labels = map[string]string{"touched": "yes"}
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	noEvent(t, rec)

	// Deleting the Secret keeps the issuer and warns.
	if err := secrets.Delete(ctx, testSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, rec); !strings.HasPrefix(e, "Warning IssuerInvalid") || !strings.Contains(e, "not found") {
		t.Fatalf("event %q, want Warning IssuerInvalid about the missing Secret", e)
	}
	if store.Current() == nil {
		t.Fatal("deleting the Secret dropped the issuer")
	}
}

func TestWatcherStartsWithoutSecret(t *testing.T) {
	a := newTestPKI(t, "a")
	client := fake.NewClientset(anchorsConfigMap(a))
	rec := record.NewFakeRecorder(10)
	store := &IssuerStore{}
	w := &Watcher{Client: client, Namespace: testCPNS, SecretName: testSecret, ConfigMapName: testCM,
		Store: store, Recorder: rec, Metrics: NewMetrics(nil), Log: discardLog()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	if e := nextEvent(t, rec); !strings.HasPrefix(e, "Warning IssuerInvalid") || !strings.Contains(e, "no issuer is loaded") {
		t.Fatalf("event %q, want Warning IssuerInvalid with no issuer loaded", e)
	}
	if _, err := client.CoreV1().Secrets(testCPNS).Create(ctx, issuerSecret(t, a), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIssuer(t, store, a.issuer)
}

func TestWatcherCheckExpired(t *testing.T) {
	iss := newTestPKI(t, "a").loaded(t)
	store := &IssuerStore{}
	rec := record.NewFakeRecorder(10)
	now := time.Now()
	w := &Watcher{Namespace: testCPNS, SecretName: testSecret, Store: store, Recorder: rec, Log: discardLog(), Now: func() time.Time { return now }}
	w.CheckExpired() // no issuer: nothing to say
	store.Set(iss)
	w.CheckExpired() // valid: nothing to say
	noEvent(t, rec)
	now = iss.CA.Cert.NotAfter.Add(time.Second)
	w.CheckExpired()
	if e := nextEvent(t, rec); !strings.HasPrefix(e, "Warning IssuerExpired") || !strings.Contains(e, `"a issuer"`) {
		t.Fatalf("event %q, want Warning IssuerExpired", e)
	}
	w.CheckExpired() // once per issuer
	noEvent(t, rec)
}
