package injector

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

// Names of the webhook's TLS objects.
const (
	TLSSecretName     = "conduit-injector-tls"
	WebhookConfigName = "conduit-proxy-injector"
	ServiceName       = "conduit-injector"
	// RenewBefore: a certificate expiring sooner is replaced.
	RenewBefore = 30 * 24 * time.Hour
	// Validity of a generated serving certificate (its CA lives twice as long).
	certValidity = 365 * 24 * time.Hour
)

// CertManager keeps the webhook's serving certificate: it loads it from the
// Secret conduit-injector-tls (type kubernetes.io/tls with ca.crt, the
// cert-manager layout), generates a self-signed CA and a serving
// certificate for conduit-injector.<ns>.svc when the Secret is missing,
// invalid, for another name or expiring within RenewBefore, and writes the
// CA into every webhook of the MutatingWebhookConfiguration
// conduit-proxy-injector. The TLS server picks the current certificate up
// through GetCertificate, without a restart.
type CertManager struct {
	Client    kubernetes.Interface
	Namespace string
	Log       *slog.Logger
	// WebhookConfig is the MutatingWebhookConfiguration to keep in sync
	// (WebhookConfigName when empty).
	WebhookConfig string
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	cert atomic.Pointer[tls.Certificate]
	ca   atomic.Pointer[[]byte]
}

// DNSName is the name the API server verifies: <service>.<ns>.svc.
func (m *CertManager) DNSName() string { return ServiceName + "." + m.Namespace + ".svc" }

func (m *CertManager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// GetCertificate implements tls.Config.GetCertificate.
func (m *CertManager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := m.cert.Load()
	if c == nil {
		return nil, errors.New("injector: no serving certificate yet")
	}
	return c, nil
}

// Ready reports whether a serving certificate is loaded.
func (m *CertManager) Ready() bool { return m.cert.Load() != nil }

// CABundle returns the PEM CA the webhook configuration must trust.
func (m *CertManager) CABundle() []byte {
	if p := m.ca.Load(); p != nil {
		return *p
	}
	return nil
}

// Reconcile makes sure a valid certificate is served and trusted: it loads
// or (re)generates the Secret and syncs the caBundle. It is cheap when
// nothing changed and is called periodically and on Secret events.
func (m *CertManager) Reconcile(ctx context.Context) error {
	secrets := m.Client.CoreV1().Secrets(m.Namespace)
	sec, err := secrets.Get(ctx, TLSSecretName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		sec = nil
	case err != nil:
		return fmt.Errorf("injector: get Secret %s: %w", TLSSecretName, err)
	}
	cert, ca, why := m.load(sec)
	if why != "" {
		m.Log.Info("generating the webhook certificate", "reason", why, "dnsName", m.DNSName())
		if cert, ca, err = m.generate(ctx, sec); err != nil {
			return err
		}
	}
	if old := m.cert.Load(); old == nil || !bytes.Equal(old.Certificate[0], cert.Certificate[0]) {
		m.Log.Info("serving certificate loaded", "notAfter", cert.Leaf.NotAfter)
	}
	m.cert.Store(cert)
	m.ca.Store(&ca)
	return m.syncCABundle(ctx, ca)
}

// load validates the Secret; why is empty when it is usable.
func (m *CertManager) load(sec *corev1.Secret) (*tls.Certificate, []byte, string) {
	if sec == nil {
		return nil, nil, "Secret " + TLSSecretName + " is missing"
	}
	crt, key, ca := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey], sec.Data["ca.crt"]
	if len(crt) == 0 || len(key) == 0 || len(ca) == 0 {
		return nil, nil, "Secret " + TLSSecretName + " lacks tls.crt, tls.key or ca.crt"
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, nil, "Secret " + TLSSecretName + " holds no valid key pair: " + err.Error()
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, nil, "unparsable certificate: " + err.Error()
		}
		pair.Leaf = leaf
	}
	if err := leaf.VerifyHostname(m.DNSName()); err != nil {
		return nil, nil, "certificate is not for " + m.DNSName()
	}
	if m.now().Add(RenewBefore).After(leaf.NotAfter) {
		return nil, nil, fmt.Sprintf("certificate expires at %s, within %s", leaf.NotAfter.Format(time.RFC3339), RenewBefore)
	}
	roots, err := pki.ParseCertificates(ca)
	if err != nil {
		return nil, nil, "ca.crt: " + err.Error()
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: m.DNSName(), CurrentTime: m.now()}); err != nil {
		return nil, nil, "certificate does not chain to ca.crt: " + err.Error()
	}
	return &pair, ca, ""
}

// generate creates a CA and a serving certificate and stores them in the
// Secret. If another replica wrote the Secret first, its content wins.
func (m *CertManager) generate(ctx context.Context, old *corev1.Secret) (*tls.Certificate, []byte, error) {
	root, err := pki.NewRoot("conduit-injector-ca."+m.Namespace, 2*certValidity)
	if err != nil {
		return nil, nil, fmt.Errorf("injector: %w", err)
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, fmt.Errorf("injector: %w", err)
	}
	leaf, err := root.SignLeaf(m.DNSName(), key.Public(), certValidity)
	if err != nil {
		return nil, nil, fmt.Errorf("injector: %w", err)
	}
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("injector: %w", err)
	}
	crtPEM, caPEM := pki.CertPEM(leaf), pki.CertPEM(root.Cert)
	data := map[string][]byte{corev1.TLSCertKey: crtPEM, corev1.TLSPrivateKeyKey: keyPEM, "ca.crt": caPEM}
	secrets := m.Client.CoreV1().Secrets(m.Namespace)
	if old == nil {
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: TLSSecretName, Namespace: m.Namespace,
				Labels: map[string]string{"conduit.dev/control-plane-component": "injector"}},
			Type: corev1.SecretTypeTLS,
			Data: data,
		}, metav1.CreateOptions{})
	} else {
		upd := old.DeepCopy()
		upd.Data = data
		if upd.Type != corev1.SecretTypeTLS {
			// The type is immutable: replace the Secret.
			if err = secrets.Delete(ctx, TLSSecretName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &old.ResourceVersion}}); err == nil {
				upd.ResourceVersion, upd.Type = "", corev1.SecretTypeTLS
				_, err = secrets.Create(ctx, upd, metav1.CreateOptions{})
			}
		} else {
			_, err = secrets.Update(ctx, upd, metav1.UpdateOptions{})
		}
	}
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		// Another replica won the race: use its certificate.
		sec, gerr := secrets.Get(ctx, TLSSecretName, metav1.GetOptions{})
		if gerr != nil {
			return nil, nil, fmt.Errorf("injector: re-read Secret %s: %w", TLSSecretName, gerr)
		}
		if cert, ca, why := m.load(sec); why == "" {
			return cert, ca, nil
		}
		return nil, nil, fmt.Errorf("injector: Secret %s changed concurrently and is still unusable", TLSSecretName)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("injector: store Secret %s: %w", TLSSecretName, err)
	}
	pair, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("injector: %w", err)
	}
	pair.Leaf = leaf
	return &pair, caPEM, nil
}

// syncCABundle writes ca into every webhook of conduit-proxy-injector that
// does not have it yet. A missing configuration is not an error (the chart
// may create it after the injector starts; the next Reconcile retries).
func (m *CertManager) syncCABundle(ctx context.Context, ca []byte) error {
	api := m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	name := nonEmpty(m.WebhookConfig, WebhookConfigName)
	for attempt := 0; attempt < 5; attempt++ {
		mwc, err := api.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			m.Log.Warn("MutatingWebhookConfiguration not found; caBundle not synced yet", "name", name)
			return nil
		}
		if err != nil {
			return fmt.Errorf("injector: get MutatingWebhookConfiguration %s: %w", name, err)
		}
		if !needsCA(mwc, ca) {
			return nil
		}
		upd := mwc.DeepCopy()
		for i := range upd.Webhooks {
			upd.Webhooks[i].ClientConfig.CABundle = ca
		}
		_, err = api.Update(ctx, upd, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("injector: update caBundle of %s: %w", name, err)
		}
		m.Log.Info("caBundle synced", "webhookConfiguration", name)
		return nil
	}
	return fmt.Errorf("injector: update caBundle of %s: too many conflicts", name)
}

// watchWebhookConfig returns an informer factory (not started) that watches
// the MutatingWebhookConfiguration by name (a metadata.name field selector,
// which RBAC's resourceNames can authorize) and calls poke whenever it is
// added or updated with a caBundle other than the one served, so that a
// re-created or reset configuration is repaired within moments instead of
// at the next periodic check. Its own update (the caBundle it writes) does
// not call poke again.
func (m *CertManager) watchWebhookConfig(poke func(any)) (informers.SharedInformerFactory, error) {
	name := nonEmpty(m.WebhookConfig, WebhookConfigName)
	factory := informers.NewSharedInformerFactoryWithOptions(m.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	onChange := func(obj any) {
		mwc, ok := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
		if !ok || mwc.Name != name {
			return
		}
		ca := m.CABundle()
		if ca == nil { // no certificate yet: the first Reconcile syncs it
			poke(obj)
			return
		}
		if needsCA(mwc, ca) {
			m.Log.Info("MutatingWebhookConfiguration lacks the serving CA; syncing its caBundle", "name", name)
			poke(obj)
		}
	}
	_, err := factory.Admissionregistration().V1().MutatingWebhookConfigurations().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onChange,
		UpdateFunc: func(_, o any) { onChange(o) },
	})
	if err != nil {
		return nil, fmt.Errorf("injector: watch MutatingWebhookConfiguration %s: %w", name, err)
	}
	return factory, nil
}

func needsCA(mwc *admissionregistrationv1.MutatingWebhookConfiguration, ca []byte) bool {
	for _, w := range mwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			return true
		}
	}
	return false
}
