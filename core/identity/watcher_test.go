package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
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

// listerWatcher is a Watcher reading secret and cm from static listers (no
// informers), on the clock *now: tests drive Reload and Periodic themselves.
func listerWatcher(t *testing.T, now *time.Time, secret *corev1.Secret, cm *corev1.ConfigMap) (*Watcher, *record.FakeRecorder, cache.Indexer) {
	t.Helper()
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	secrets, cms := idx(), idx()
	if err := secrets.Add(secret); err != nil {
		t.Fatal(err)
	}
	if err := cms.Add(cm); err != nil {
		t.Fatal(err)
	}
	rec := record.NewFakeRecorder(20)
	w := &Watcher{Namespace: testCPNS, SecretName: testSecret, ConfigMapName: testCM,
		Store: &IssuerStore{}, Recorder: rec, Metrics: NewMetrics(nil), Log: discardLog(),
		Now:     func() time.Time { return *now },
		secrets: listersv1.NewSecretLister(secrets), configMaps: listersv1.NewConfigMapLister(cms)}
	return w, rec, secrets
}

// TestWatcherRetriesInvalidPair: a pair refused for a reason that time fixes
// (this node's clock behind the issuer's NotBefore) is loaded by the next
// periodic check, without any change to the Secret; one that stays invalid is
// retried silently.
func TestWatcherRetriesInvalidPair(t *testing.T) {
	a, b := newTestPKI(t, "a"), newTestPKI(t, "b")
	tests := []struct {
		name      string
		secret    *corev1.Secret
		cm        *corev1.ConfigMap
		firstErr  string
		laterErr  string  // reported once the clock is right, when the pair still fails otherwise
		wantAfter *pki.CA // loaded once the clock is right; nil: still none
	}{
		{"issuer not valid yet on this clock", issuerSecret(t, a), anchorsConfigMap(a), "is not valid before", "", a.issuer},
		{"issuer not valid yet, then not chaining", issuerSecret(t, b), anchorsConfigMap(a), "is not valid before", "does not chain", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now().Add(-time.Hour) // the node's clock an hour behind
			w, rec, _ := listerWatcher(t, &now, tt.secret, tt.cm)
			w.Reload()
			if e := nextEvent(t, rec); !strings.HasPrefix(e, "Warning IssuerInvalid") || !strings.Contains(e, tt.firstErr) {
				t.Fatalf("event %q, want Warning IssuerInvalid %q", e, tt.firstErr)
			}
			w.Periodic() // still invalid: nothing new to say
			noEvent(t, rec)
			now = time.Now()
			w.Periodic()
			if tt.wantAfter == nil {
				if e := nextEvent(t, rec); !strings.HasPrefix(e, "Warning IssuerInvalid") || !strings.Contains(e, tt.laterErr) {
					t.Fatalf("event %q, want Warning IssuerInvalid %q", e, tt.laterErr)
				}
				w.Periodic() // fails the same way: silent
				noEvent(t, rec)
				if w.Store.Current() != nil {
					t.Fatal("an invalid pair was loaded")
				}
			} else {
				if e := nextEvent(t, rec); !strings.HasPrefix(e, "Normal IssuerUpdated") {
					t.Fatalf("event %q, want Normal IssuerUpdated", e)
				}
				if cur := w.Store.Current(); cur == nil || !cur.CA.Cert.Equal(tt.wantAfter.Cert) {
					t.Fatalf("issuer %v not loaded after the clock caught up", tt.wantAfter.Cert.Subject.CommonName)
				}
			}
			want := 1.0
			if tt.laterErr != "" {
				want = 2
			}
			if got := testutil.ToFloat64(w.Metrics.reloads.WithLabelValues("invalid")); got != want {
				t.Errorf("reloads{invalid} = %v, want %v (silent retries are not reloads)", got, want)
			}
		})
	}
}

// caSignedBy is a CA certificate for key, signed by parent (MaxPathLen 1).
func caSignedBy(t *testing.T, parent *pki.CA, key crypto.Signer, cn string, serial int64, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestWatcherRenewedIntermediate: an intermediate renewed (same key, new
// certificate) under an unchanged issuer replaces the one Certify sends.
func TestWatcherRenewedIntermediate(t *testing.T) {
	root := newTestPKI(t, "r").anchor
	midKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	midOld := caSignedBy(t, root, midKey, "mid", 1, time.Now().Add(48*time.Hour))
	midNew := caSignedBy(t, root, midKey, "mid", 2, time.Now().Add(90*24*time.Hour))
	issKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	issCert := caSignedBy(t, &pki.CA{Cert: midOld, Key: midKey}, issKey, "issuer", 3, time.Now().Add(30*24*time.Hour))
	keyPEM, err := pki.KeyPEM(issKey)
	if err != nil {
		t.Fatal(err)
	}
	inTLS := func(mid *x509.Certificate) map[string][]byte {
		return map[string][]byte{SecretCertKey: append(pki.CertPEM(issCert), pki.CertPEM(mid)...), SecretKeyKey: keyPEM}
	}
	inCA := func(mid *x509.Certificate) map[string][]byte {
		return map[string][]byte{SecretCertKey: pki.CertPEM(issCert), SecretKeyKey: keyPEM, SecretCAKey: pki.CertPEM(mid)}
	}
	tests := []struct {
		name   string
		layout func(*x509.Certificate) map[string][]byte
	}{
		{"intermediate in tls.crt", inTLS},
		{"intermediate in ca.crt", inCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testCPNS}, Data: tt.layout(midOld)}
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: testCM, Namespace: testCPNS}, Data: map[string]string{AnchorBundleKey: string(pki.CertPEM(root.Cert))}}
			w, rec, secrets := listerWatcher(t, &now, secret, cm)
			w.Reload()
			if e := nextEvent(t, rec); !strings.HasPrefix(e, "Normal IssuerUpdated") {
				t.Fatalf("event %q, want Normal IssuerUpdated", e)
			}
			renewed := secret.DeepCopy()
			renewed.Data = tt.layout(midNew)
			if err := secrets.Update(renewed); err != nil {
				t.Fatal(err)
			}
			w.Reload()
			if e := nextEvent(t, rec); !strings.HasPrefix(e, "Normal IssuerUpdated") {
				t.Fatalf("event %q, want Normal IssuerUpdated", e)
			}
			got := w.Store.Current().Intermediates
			if len(got) != 2 || !bytes.Equal(got[0], issCert.Raw) || !bytes.Equal(got[1], midNew.Raw) {
				t.Fatalf("Certify would send %d certificates, not [issuer, renewed intermediate]", len(got))
			}
		})
	}
}

// TestWatcherCheckExpiredChain: an anchor that expires before the issuer
// stops Certify as an expired issuer does, and says so once.
func TestWatcherCheckExpiredChain(t *testing.T) {
	now := time.Now()
	anchor := selfSignedCA(t, "short anchor", now.Add(-time.Hour), now.Add(time.Hour))
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	issCert := caSignedBy(t, anchor, key, "long issuer", 41, now.Add(48*time.Hour))
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := LoadIssuer(map[string][]byte{SecretCertKey: pki.CertPEM(issCert), SecretKeyKey: keyPEM}, pki.CertPEM(anchor.Cert), now)
	if err != nil {
		t.Fatal(err)
	}
	store := &IssuerStore{}
	store.Set(iss)
	rec := record.NewFakeRecorder(10)
	w := &Watcher{Namespace: testCPNS, SecretName: testSecret, Store: store, Recorder: rec, Log: discardLog(), Now: func() time.Time { return now }}
	w.CheckExpired()
	noEvent(t, rec)
	now = anchor.Cert.NotAfter.Add(time.Second)
	w.CheckExpired()
	if e := nextEvent(t, rec); !strings.HasPrefix(e, "Warning IssuerExpired") || !strings.Contains(e, `"short anchor"`) || !strings.Contains(e, `"long issuer"`) {
		t.Fatalf("event %q, want Warning IssuerExpired naming the anchor and the issuer", e)
	}
	w.CheckExpired()
	noEvent(t, rec)
}

// TestWatcherRefusesRestrictedExtKeyUsage: an issuer, or a trust anchor,
// whose extended key usages leave out serverAuth or clientAuth (every leaf
// under it would fail verification at the peers) is refused like any other
// invalid pair: the last good issuer stays, a Warning IssuerInvalid names
// the certificate and what it lacks, and a retry that fails the same way is
// silent.
func TestWatcherRefusesRestrictedExtKeyUsage(t *testing.T) {
	a := newTestPKI(t, "a")
	keyPEM := func(ca *pki.CA) []byte {
		k, err := pki.KeyPEM(ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	csIssuer := ekuCA(t, a.anchor, "code-signing issuer", x509.ExtKeyUsageCodeSigning)
	csRoot := ekuCA(t, nil, "code-signing root", x509.ExtKeyUsageCodeSigning)
	tests := []struct {
		name   string
		secret *corev1.Secret
		cm     *corev1.ConfigMap
		want   string
	}{
		{"a new issuer restricted to codeSigning", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testCPNS},
			Data: map[string][]byte{SecretCertKey: pki.CertPEM(csIssuer.Cert), SecretKeyKey: keyPEM(csIssuer)}}, anchorsConfigMap(a),
			`certificate "code-signing issuer": extended key usages exclude mesh TLS: it lists only codeSigning, without serverAuth and clientAuth`},
		{"a root restricted to codeSigning added to the bundle", issuerSecret(t, a), anchorsConfigMap(a, testPKI{anchor: csRoot}),
			`certificate "code-signing root": extended key usages exclude mesh TLS: it lists only codeSigning, without serverAuth and clientAuth`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			w, rec, _ := listerWatcher(t, &now, tt.secret, tt.cm)
			good := a.loaded(t)
			w.Store.Set(good) // loaded before the change
			w.Reload()
			e := nextEvent(t, rec)
			if !strings.HasPrefix(e, "Warning IssuerInvalid") || !strings.Contains(e, tt.want) || !strings.Contains(e, `keeping the last good issuer "a issuer"`) {
				t.Fatalf("event %q, want Warning IssuerInvalid %q keeping a's issuer", e, tt.want)
			}
			if w.Store.Current() != good {
				t.Fatal("the refused pair replaced the issuer")
			}
			w.Periodic() // retried, fails the same way: silent
			noEvent(t, rec)
		})
	}
}
