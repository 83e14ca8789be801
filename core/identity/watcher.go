package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Event reasons the Watcher records on the issuer Secret.
const (
	EventIssuerUpdated = "IssuerUpdated"
	EventIssuerInvalid = "IssuerInvalid"
	EventIssuerExpired = "IssuerExpired"
)

// expiryCheckInterval is how often the Watcher checks that the loaded issuer has not expired.
const expiryCheckInterval = time.Minute

// Watcher keeps an IssuerStore in step with the issuer Secret and the trust
// anchor ConfigMap. On every change it validates the pair with LoadIssuer; a
// valid pair replaces the issuer and records a Normal IssuerUpdated event on
// the Secret, an invalid one keeps the last good issuer and records a Warning
// IssuerInvalid event saying why.
type Watcher struct {
	Client        kubernetes.Interface
	Namespace     string
	SecretName    string
	ConfigMapName string
	Store         *IssuerStore
	Recorder      record.EventRecorder
	Metrics       *Metrics
	Log           *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	secrets    listersv1.SecretLister
	configMaps listersv1.ConfigMapLister
	// last digests the inputs of the last reload, so that an unchanged pair
	// (an informer resync, a label change) records no new event.
	last string
	// lastErr is errKey of the failure last reported, empty when the
	// inputs digested in last validated: a retry that fails the same way
	// stays silent, one that fails otherwise is reported. Validity depends
	// on the clock (an issuer or anchor not valid yet, e.g. cert-manager's
	// NotBefore a second ahead of this node's clock), so Run validates
	// failed inputs again every minute instead of waiting for a change that
	// may never come.
	lastErr string
	// expiredWarned is the fingerprint of the certificate (the issuer or one of
	// its chain) last reported expired.
	expiredWarned string
}

// NewEventRecorder returns a recorder writing Events in namespace as component.
// Call the returned stop function on exit to flush them.
func NewEventRecorder(client kubernetes.Interface, namespace, component string) (record.EventRecorder, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events(namespace)})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component}), b.Shutdown
}

// Run watches until ctx ends. It returns once the informers stop; the first
// load happens as soon as their caches have synced.
func (w *Watcher) Run(ctx context.Context) error {
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	byName := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	}
	sf := informers.NewSharedInformerFactoryWithOptions(w.Client, 0, informers.WithNamespace(w.Namespace), byName(w.SecretName))
	cf := informers.NewSharedInformerFactoryWithOptions(w.Client, 0, informers.WithNamespace(w.Namespace), byName(w.ConfigMapName))
	si := sf.Core().V1().Secrets()
	ci := cf.Core().V1().ConfigMaps()
	if _, err := si.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("identity: watch Secret: %w", err)
	}
	if _, err := ci.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("identity: watch ConfigMap: %w", err)
	}
	w.secrets, w.configMaps = si.Lister(), ci.Lister()
	sf.Start(ctx.Done())
	cf.Start(ctx.Done())
	defer sf.Shutdown()
	defer cf.Shutdown()
	for typ, ok := range sf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("identity: cache of %v did not sync: %w", typ, ctx.Err())
		}
	}
	for typ, ok := range cf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("identity: cache of %v did not sync: %w", typ, ctx.Err())
		}
	}
	poke()
	tick := time.NewTicker(expiryCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			w.Reload()
		case <-tick.C:
			w.Periodic()
		}
	}
}

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watcher) secretRef() *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Secret", APIVersion: "v1", Namespace: w.Namespace, Name: w.SecretName}
}

// Periodic is what Run does every minute: it validates again a pair that was
// invalid (silently while it fails the same way: that was reported already),
// and reports an expired issuer.
func (w *Watcher) Periodic() {
	if w.lastErr != "" {
		w.reload(true)
	}
	w.CheckExpired()
}

// Reload reads the Secret and the ConfigMap from the informer caches and
// validates them. It is called by Run on every change.
func (w *Watcher) Reload() { w.reload(false) }

// reload is Reload; retry validates unchanged inputs again and reports a
// success or a failure other than the last one reported.
func (w *Watcher) reload(retry bool) {
	secretData, errS := w.readSecret()
	bundle, errC := w.readBundle()
	state := stateOf(secretData, bundle, errS, errC)
	if state == w.last && !retry {
		return
	}
	if state != w.last {
		retry = false // new inputs: report whatever they give
	}
	w.last = state
	var iss *Issuer
	err := errS
	if err == nil {
		err = errC
	}
	if err == nil {
		iss, err = LoadIssuer(secretData, bundle, w.now())
	}
	if err != nil {
		if retry && errKey(err) == w.lastErr {
			return
		}
		w.lastErr = errKey(err)
		w.Metrics.reloads.WithLabelValues("invalid").Inc()
		keep := "no issuer is loaded: Certify fails until this is fixed"
		if cur := w.Store.Current(); cur != nil {
			keep = "keeping the last good issuer " + cur.String()
		}
		w.Log.Error("issuer or trust anchors invalid", "error", err, "action", keep)
		w.Recorder.Eventf(w.secretRef(), corev1.EventTypeWarning, EventIssuerInvalid, "%v; %s", err, keep)
		return
	}
	w.lastErr = ""
	cur := w.Store.Current()
	// The chain sent after the leaf counts too: an intermediate renewed in
	// tls.crt or ca.crt under an unchanged issuer must replace the old one
	// before that expires.
	if cur != nil && cur.CA.Cert.Equal(iss.CA.Cert) && sameCerts(cur.Anchors, iss.Anchors) && sameDER(cur.Intermediates, iss.Intermediates) {
		return
	}
	w.Store.Set(iss)
	w.Metrics.observeIssuer(iss)
	w.Log.Info("issuer loaded", "issuer", iss.String(), "trust_anchors", len(iss.Anchors))
	w.Recorder.Eventf(w.secretRef(), corev1.EventTypeNormal, EventIssuerUpdated, "loaded issuer %s chaining to %d trust anchor(s)", iss, len(iss.Anchors))
}

// stateOf digests what a reload depends on: the Secret's data, the bundle
// and the read errors (metadata-only changes and resyncs give the same state).
func stateOf(secret map[string][]byte, bundle []byte, errs ...error) string {
	h := sha256.New()
	for _, k := range []string{SecretCertKey, SecretKeyKey, SecretCAKey} {
		fmt.Fprintf(h, "%s:%d:", k, len(secret[k]))
		h.Write(secret[k])
	}
	fmt.Fprintf(h, "bundle:%d:", len(bundle))
	h.Write(bundle)
	for _, err := range errs {
		if err != nil {
			fmt.Fprintf(h, "err:%s", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CheckExpired records a Warning IssuerExpired event (once per issuer) when
// the loaded issuer has expired: Certify refuses every request until the
// Secret holds a valid issuer. Run calls it every minute.
func (w *Watcher) CheckExpired() {
	cur := w.Store.Current()
	if cur == nil {
		return
	}
	first := cur.FirstToExpire()
	if !w.now().After(first.NotAfter) {
		return
	}
	fp := Fingerprint(first)
	if fp == w.expiredWarned {
		return
	}
	w.expiredWarned = fp
	what := "issuer " + cur.String()
	if first != cur.CA.Cert {
		what = fmt.Sprintf("certificate %q (expired %s) in the chain of issuer %s", first.Subject.CommonName, first.NotAfter.UTC().Format(time.RFC3339), cur)
	}
	w.Log.Error("issuer expired: every Certify request fails until the issuer Secret is replaced", "issuer", cur.String(), "expired", what)
	w.Recorder.Eventf(w.secretRef(), corev1.EventTypeWarning, EventIssuerExpired,
		"%s has expired: every Certify request fails until the Secret holds an issuer signed by a current trust anchor", what)
}

func (w *Watcher) readSecret() (map[string][]byte, error) {
	s, err := w.secrets.Secrets(w.Namespace).Get(w.SecretName)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("identity: issuer Secret %s/%s not found", w.Namespace, w.SecretName)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: read issuer Secret %s/%s: %w", w.Namespace, w.SecretName, err)
	}
	return s.Data, nil
}

func (w *Watcher) readBundle() ([]byte, error) {
	c, err := w.configMaps.ConfigMaps(w.Namespace).Get(w.ConfigMapName)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("identity: trust anchors ConfigMap %s/%s not found", w.Namespace, w.ConfigMapName)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: read trust anchors ConfigMap %s/%s: %w", w.Namespace, w.ConfigMapName, err)
	}
	if v, ok := c.Data[AnchorBundleKey]; ok {
		return []byte(v), nil
	}
	return c.BinaryData[AnchorBundleKey], nil
}

// errKey is what identifies a reload failure across retries: its message,
// except for a certificate's validity error, whose message names the current
// time.
func errKey(err error) string {
	var cie x509.CertificateInvalidError
	if errors.As(err, &cie) && cie.Cert != nil {
		return fmt.Sprintf("x509 invalid (reason %d): %s", cie.Reason, Fingerprint(cie.Cert))
	}
	return err.Error()
}

func sameDER(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
