package cmd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names shared with the identity service (core/identity): the event it
// records on the issuer Secret after loading an issuer, and the proxy's
// trust-anchor variable.
const (
	issuerUpdatedReason = "IssuerUpdated"
	issuerInvalidReason = "IssuerInvalid"
	trustAnchorsEnv     = "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS"
	certManagerCertAnno = "cert-manager.io/certificate-name"
	rotateSteps         = 6
	// bundleUpdatedAnnotation records on the bundle ConfigMap when rotate-anchors changed it.
	bundleUpdatedAnnotation = "conduit.dev/trust-roots-updated-at"
)

type rotateFlags struct {
	anchorFile, issuerCertFile, issuerKeyFile, generateDir string
	fromStep, toStep                                       int
	restart                                                bool
	timeout                                                time.Duration
}

func newRotateAnchorsCmd(o *Options) *cobra.Command {
	var f rotateFlags
	c := &cobra.Command{
		Use:   "rotate-anchors",
		Short: "Move a live mesh from its trust anchor to a new one without failing a request",
		Long: `rotate-anchors replaces the mesh's trust anchor A by a new anchor B in six steps,
each printed as it runs. Every step is idempotent: after a failure, fix the cause
and re-run with --from-step N.

  1. add B to the trust-anchor bundle (ConfigMap conduit-identity-trust-roots): A+B
  2. restart the meshed workloads whose proxies do not trust B yet (proxies read
     the bundle at start) and wait for their rollouts
  3. replace the issuer (Secret conduit-identity-issuer) by one signed by B and
     wait until the identity service has loaded it (event IssuerUpdated)
  4. restart the meshed workloads whose proxies got their certificate from the
     old issuer, so that every leaf is signed by B's issuer
  5. remove every anchor but B from the bundle
  6. restart the meshed workloads whose proxies still trust A

Every proxy trusts both anchors before any certificate from B's issuer exists,
and no proxy stops trusting A before every certificate from A's issuer is gone,
so no TLS handshake fails. Give B and its issuer as files, or let
--generate-dir create them (write down where: you need B's key to sign the
next issuer). See docs/identity.md.`,
		Example: `  mesh identity rotate-anchors --new-anchor-file b.crt --new-issuer-cert-file issuer-b.crt --new-issuer-key-file issuer-b.key
  mesh identity rotate-anchors --generate-dir ./anchor-b
  mesh identity rotate-anchors --new-anchor-file b.crt --from-step 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTimeout("rotate-anchors", "timeout", f.timeout); err != nil {
				return err
			}
			k, err := o.Kube()
			if err != nil {
				return fmt.Errorf("rotate-anchors: %w", err)
			}
			r, err := newRotation(f, k, o.controlPlaneNS(), o.Out)
			if err != nil {
				return err
			}
			if err := r.run(cmd.Context(), f.fromStep, f.toStep); err != nil {
				return fmt.Errorf("rotate-anchors: %w", err)
			}
			return nil
		},
	}
	fs := c.Flags()
	fs.StringVar(&f.anchorFile, "new-anchor-file", "", "PEM certificate of the new trust anchor B")
	fs.StringVar(&f.issuerCertFile, "new-issuer-cert-file", "", "PEM certificate of the new issuer, signed by B (optionally followed by intermediates)")
	fs.StringVar(&f.issuerKeyFile, "new-issuer-key-file", "", "PEM private key (ECDSA P-256) of the new issuer")
	fs.StringVar(&f.generateDir, "generate-dir", "", "generate B and its issuer into this new directory (anchor.crt, anchor.key, issuer.crt, issuer.key) instead of reading files")
	fs.IntVar(&f.fromStep, "from-step", 1, "first step to run (1-6), to resume")
	fs.IntVar(&f.toStep, "to-step", rotateSteps, "last step to run (1-6), to pause between steps")
	fs.BoolVar(&f.restart, "restart", true, "restart meshed workloads in steps 2, 4 and 6 (false: print them and stop, for you to restart)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "how long each step may wait for rollouts and for the identity service")
	return c
}

// rotation is one run of rotate-anchors.
type rotation struct {
	k       *Kube
	ns      string
	out     io.Writer
	restart bool
	timeout time.Duration
	poll    time.Duration
	now     func() time.Time

	anchor        *x509.Certificate
	anchorPEM     []byte
	issuer        *pki.CA // nil when resuming at step 4 or later
	issuerCertPEM []byte
	issuerKeyPEM  []byte

	// waitRollouts waits for restarted workloads, waitTerminated for their
	// old pods to exit, and sleep waits (all replaced in tests).
	waitRollouts   func(ctx context.Context, ws []workloadRef) error
	waitTerminated func(ctx context.Context, ws []workloadRef) error
	sleep          func(ctx context.Context, d time.Duration) error
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func newRotation(f rotateFlags, k *Kube, ns string, out io.Writer) (*rotation, error) {
	if f.fromStep < 1 || f.toStep > rotateSteps || f.fromStep > f.toStep {
		return nil, fmt.Errorf("rotate-anchors: --from-step %d and --to-step %d must satisfy 1 <= from <= to <= %d", f.fromStep, f.toStep, rotateSteps)
	}
	r := &rotation{k: k, ns: ns, out: out, restart: f.restart, timeout: f.timeout, poll: 2 * time.Second, now: time.Now, sleep: sleepCtx}
	r.waitRollouts = func(ctx context.Context, ws []workloadRef) error {
		return waitRollouts(ctx, r.k, ws, r.poll, r.timeout, func(s string) { r.printf("    %s\n", s) })
	}
	r.waitTerminated = func(ctx context.Context, ws []workloadRef) error {
		return waitTerminated(ctx, r.k, ws, r.poll, r.timeout, func(s string) { r.printf("    %s\n", s) })
	}
	var err error
	if f.generateDir != "" {
		if f.anchorFile != "" || f.issuerCertFile != "" || f.issuerKeyFile != "" {
			return nil, errors.New("rotate-anchors: --generate-dir excludes --new-anchor-file, --new-issuer-cert-file and --new-issuer-key-file")
		}
		if f.fromStep > 1 {
			return nil, errors.New("rotate-anchors: --generate-dir starts a new rotation; to resume one, pass the files it generated with --new-anchor-file (and the issuer files up to step 3)")
		}
		if err := r.generate(f.generateDir); err != nil {
			return nil, err
		}
	} else {
		if f.anchorFile == "" {
			return nil, errors.New("rotate-anchors: give the new anchor with --new-anchor-file (and its issuer with --new-issuer-cert-file and --new-issuer-key-file), or --generate-dir")
		}
		if r.anchorPEM, err = os.ReadFile(f.anchorFile); err != nil {
			return nil, fmt.Errorf("rotate-anchors: %w", err)
		}
		if f.issuerCertFile != "" || f.issuerKeyFile != "" {
			if r.issuerCertPEM, err = os.ReadFile(f.issuerCertFile); err != nil {
				return nil, fmt.Errorf("rotate-anchors: %w", err)
			}
			if r.issuerKeyPEM, err = os.ReadFile(f.issuerKeyFile); err != nil {
				return nil, fmt.Errorf("rotate-anchors: %w", err)
			}
		}
	}
	if err := r.validateInputs(); err != nil {
		return nil, err
	}
	if r.issuer == nil && f.fromStep <= 3 && f.toStep >= 3 {
		return nil, errors.New("rotate-anchors: step 3 needs the new issuer: pass --new-issuer-cert-file and --new-issuer-key-file")
	}
	return r, nil
}

// generate creates B (10 years) and an issuer (1 year) and writes them to dir.
func (r *rotation) generate(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("rotate-anchors: --generate-dir must name a new directory: %w", err)
	}
	root, err := pki.NewRoot("root.conduit.cluster.local", generatedAnchorValidity)
	if err != nil {
		return err
	}
	iss, err := root.NewIssuer("identity.conduit.cluster.local", generatedIssuerValidity)
	if err != nil {
		return err
	}
	rootKey, err := pki.KeyPEM(root.Key)
	if err != nil {
		return err
	}
	issKey, err := pki.KeyPEM(iss.Key)
	if err != nil {
		return err
	}
	r.anchorPEM, r.issuerCertPEM, r.issuerKeyPEM = pki.CertPEM(root.Cert), pki.CertPEM(iss.Cert), issKey
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{{"anchor.crt", r.anchorPEM, 0o644}, {"anchor.key", rootKey, 0o600}, {"issuer.crt", r.issuerCertPEM, 0o644}, {"issuer.key", issKey, 0o600}}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("rotate-anchors: %w", err)
		}
	}
	r.printf("Generated the new trust anchor and issuer in %s (keep anchor.key offline: it signs future issuers).\n", dir)
	return nil
}

func (r *rotation) validateInputs() error {
	anchors, err := pki.ParseCertificates(r.anchorPEM)
	if err != nil {
		return fmt.Errorf("rotate-anchors: new anchor: %w", err)
	}
	if len(anchors) != 1 {
		return fmt.Errorf("rotate-anchors: the new anchor file holds %d certificates; give exactly one", len(anchors))
	}
	r.anchor = anchors[0]
	now := r.now()
	if !r.anchor.IsCA || r.anchor.CheckSignatureFrom(r.anchor) != nil {
		return fmt.Errorf("rotate-anchors: the new anchor %q is not a self-signed CA certificate", r.anchor.Subject.CommonName)
	}
	// Step 1 would add it to the bundle, which the identity service would then refuse.
	if err := pki.CheckExtKeyUsage(r.anchor); err != nil {
		return fmt.Errorf("rotate-anchors: the new anchor: %w", err)
	}
	if now.Before(r.anchor.NotBefore) || now.After(r.anchor.NotAfter) {
		return fmt.Errorf("rotate-anchors: the new anchor %q is not valid now (valid %s to %s)", r.anchor.Subject.CommonName, r.anchor.NotBefore.UTC().Format(time.RFC3339), r.anchor.NotAfter.UTC().Format(time.RFC3339))
	}
	r.anchorPEM = pki.CertPEM(r.anchor) // normalised: one block, no comments
	if r.issuerCertPEM == nil {
		return nil
	}
	if r.issuer, err = pki.LoadCA(r.issuerCertPEM, r.issuerKeyPEM); err != nil {
		return fmt.Errorf("rotate-anchors: new issuer: %w", err)
	}
	if k, ok := r.issuer.Key.Public().(*ecdsa.PublicKey); !ok || k.Curve.Params().Name != "P-256" {
		return fmt.Errorf("rotate-anchors: the new issuer's key must be ECDSA P-256 (the identity service refuses others)")
	}
	if err := pki.VerifyIssuer(r.issuer, []*x509.Certificate{r.anchor}, now); err != nil {
		return fmt.Errorf("rotate-anchors: the new issuer must be signed by the new anchor: %w", err)
	}
	return nil
}

func (r *rotation) printf(format string, args ...any) { fmt.Fprintf(r.out, format, args...) }

func (r *rotation) run(ctx context.Context, from, to int) error {
	steps := []struct {
		title string
		run   func(context.Context) error
	}{
		{"add the new anchor to the trust-anchor bundle", r.addAnchor},
		{"restart the proxies that do not trust the new anchor yet", r.trustNewAnchor},
		{"switch the issuer to one signed by the new anchor", r.switchIssuer},
		{"restart the proxies holding a certificate from the old issuer", r.renewLeaves},
		{"remove the old anchors from the bundle", r.removeOldAnchors},
		{"restart the proxies that still trust the old anchors", r.dropOldAnchors},
	}
	r.printf("Rotating the trust anchor of the control plane in %s to %q (sha256 %s).\n", r.ns, r.anchor.Subject.CommonName, fingerprint(r.anchor)[:16])
	for i := from; i <= to; i++ {
		s := steps[i-1]
		r.printf("\nStep %d/%d: %s\n", i, rotateSteps, s.title)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("step %d (%s): %w\nfix the cause, then resume with --from-step %d", i, s.title, err, i)
		}
	}
	if to < rotateSteps {
		r.printf("\nStopped after step %d: resume with --from-step %d.\n", to, to+1)
		return nil
	}
	r.printf("\nDone: the mesh trusts only %q and every proxy holds a certificate from its issuer.\n", r.anchor.Subject.CommonName)
	return nil
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// bundle reads the trust-anchor ConfigMap.
func (r *rotation) bundle(ctx context.Context) (*corev1.ConfigMap, []*x509.Certificate, error) {
	cm, certs, err := readTrustBundle(ctx, r.k.Client, r.ns)
	switch {
	case cm == nil:
		return nil, nil, fmt.Errorf("%w (is Conduit installed in %s?)", err, r.ns)
	case err != nil:
		return nil, nil, err
	}
	return cm, certs, nil
}

func (r *rotation) writeBundle(ctx context.Context, cm *corev1.ConfigMap, certs []*x509.Certificate) error {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(pki.CertPEM(c))
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[trustRootsKey] = b.String()
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[bundleUpdatedAnnotation] = r.now().UTC().Format(time.RFC3339Nano)
	if _, err := r.k.Client.CoreV1().ConfigMaps(r.ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update ConfigMap %s/%s: %w", r.ns, trustRootsName, err)
	}
	return nil
}

func names(certs []*x509.Certificate) string {
	var out []string
	for _, c := range certs {
		out = append(out, fmt.Sprintf("%q (sha256 %s, expires %s)", c.Subject.CommonName, fingerprint(c)[:16], c.NotAfter.UTC().Format("2006-01-02")))
	}
	return strings.Join(out, ", ")
}

func containsCert(set []*x509.Certificate, c *x509.Certificate) bool {
	return slices.ContainsFunc(set, func(s *x509.Certificate) bool { return s.Equal(c) })
}

// Step 1.
func (r *rotation) addAnchor(ctx context.Context) error {
	cm, certs, err := r.bundle(ctx)
	if err != nil {
		return err
	}
	r.printf("  bundle now: %s\n", names(certs))
	if containsCert(certs, r.anchor) {
		r.printf("  the new anchor is already in the bundle: nothing to do\n")
		return nil
	}
	certs = append(certs, r.anchor)
	if err := r.writeBundle(ctx, cm, certs); err != nil {
		return err
	}
	r.printf("  updated ConfigMap %s/%s: %s\n", r.ns, trustRootsName, names(certs))
	r.printf("  the injector gives the new bundle to every pod it injects from now on\n")
	return nil
}

// changedAt is when the bundle ConfigMap last changed (zero when unknown):
// the later of what rotate-anchors recorded and what the API server did.
func changedAt(cm *corev1.ConfigMap) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, cm.Annotations[bundleUpdatedAnnotation])
	for _, m := range cm.ManagedFields {
		if m.Time != nil && m.Time.After(t) {
			t = m.Time.Time
		}
	}
	return t
}

// proxyAnchors returns the anchors a pod's proxy was started with. known is
// false when the pod takes them from a ConfigMap reference (the control
// plane's own pods), read when the container started.
func proxyAnchors(p *corev1.Pod) (anchors []*x509.Certificate, known, meshed bool) {
	for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
		if c.Name != proxyContainerName {
			continue
		}
		for _, e := range c.Env {
			if e.Name != trustAnchorsEnv {
				continue
			}
			if e.ValueFrom != nil {
				return nil, false, true
			}
			certs, err := pki.ParseCertificates([]byte(e.Value))
			if err != nil {
				return nil, false, true
			}
			return certs, true, true
		}
		return nil, false, true
	}
	return nil, false, false
}

// startedBefore reports whether p was created before t (or t is unknown).
func startedBefore(p *corev1.Pod, t time.Time) bool {
	return t.IsZero() || !p.CreationTimestamp.After(t)
}

// lacksNewAnchor is the staleness rule of step 2: the proxy does not trust B.
func (r *rotation) lacksNewAnchor(cm *corev1.ConfigMap) func(*corev1.Pod) bool {
	at := changedAt(cm)
	return func(p *corev1.Pod) bool {
		anchors, known, _ := proxyAnchors(p)
		if known {
			return !containsCert(anchors, r.anchor)
		}
		return startedBefore(p, at)
	}
}

// Step 2.
func (r *rotation) trustNewAnchor(ctx context.Context) error {
	cm, certs, err := r.bundle(ctx)
	if err != nil {
		return err
	}
	if !containsCert(certs, r.anchor) {
		return errors.New("the new anchor is not in the bundle: run step 1 first")
	}
	return r.restartStale(ctx, "does not trust the new anchor", changedAt(cm), r.lacksNewAnchor(cm))
}

// staleNames lists the meshed pods for which stale holds.
func (r *rotation) staleNames(ctx context.Context, stale func(*corev1.Pod) bool) ([]string, error) {
	pods, err := r.meshedPods(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := range pods {
		if stale(&pods[i]) {
			out = append(out, pods[i].Namespace+"/"+pods[i].Name)
		}
	}
	return out, nil
}

// Step 3.
func (r *rotation) switchIssuer(ctx context.Context) error {
	_, certs, err := r.bundle(ctx)
	if err != nil {
		return err
	}
	if !containsCert(certs, r.anchor) {
		return errors.New("the new anchor is not in the bundle: run steps 1 and 2 first")
	}
	secrets := r.k.Client.CoreV1().Secrets(r.ns)
	s, err := secrets.Get(ctx, issuerSecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read Secret %s/%s: %w", r.ns, issuerSecretName, err)
	}
	fp := fingerprint(r.issuer.Cert)
	switched := false
	if cur, err := pki.ParseCertificates(s.Data[corev1.TLSCertKey]); err == nil && cur[0].Equal(r.issuer.Cert) {
		switched = true
	}
	if !switched {
		// A proxy that does not trust B would refuse every certificate B's issuer signs.
		cm, _, err := r.bundle(ctx)
		if err != nil {
			return err
		}
		left, err := r.staleNames(ctx, r.lacksNewAnchor(cm))
		if err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("%d meshed pods do not trust the new anchor yet (%s): run step 2 first", len(left), strings.Join(left, ", "))
		}
	}
	if switched {
		r.printf("  the Secret %s/%s already holds the new issuer\n", r.ns, issuerSecretName)
	} else if name := s.Annotations[certManagerCertAnno]; name != "" {
		return fmt.Errorf("cert-manager manages the Secret %s/%s (Certificate %q): point its Issuer at the new anchor's issuer, wait for cert-manager to renew the Secret, then resume with --from-step 4 (see docs/identity.md)", r.ns, issuerSecretName, name)
	} else {
		s = s.DeepCopy()
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[corev1.TLSCertKey] = r.issuerCertPEM
		s.Data[corev1.TLSPrivateKeyKey] = r.issuerKeyPEM
		s.Data["ca.crt"] = r.anchorPEM
		if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update Secret %s/%s: %w", r.ns, issuerSecretName, err)
		}
		r.printf("  updated Secret %s/%s: issuer %q (sha256 %s), signed by the new anchor\n", r.ns, issuerSecretName, r.issuer.Cert.Subject.CommonName, fp[:16])
	}
	r.printf("  waiting for the identity service to load it (event %s on the Secret)...\n", issuerUpdatedReason)
	at, err := r.waitIssuerLoaded(ctx, fp)
	if err != nil {
		return err
	}
	r.printf("  the identity service signs with the new issuer since %s\n", at.UTC().Format(time.RFC3339))
	return nil
}

// issuerLoaded finds the IssuerUpdated event for the issuer with fingerprint
// fp and returns when it was recorded, or the last IssuerInvalid warning.
func (r *rotation) issuerLoaded(ctx context.Context, fp string) (loadedAt time.Time, ok bool, warning string, err error) {
	evs, err := r.k.Client.CoreV1().Events(r.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Secret,involvedObject.name=" + issuerSecretName})
	if err != nil {
		return time.Time{}, false, "", fmt.Errorf("list the events of Secret %s/%s: %w", r.ns, issuerSecretName, err)
	}
	var lastWarn time.Time
	for _, e := range evs.Items {
		if e.InvolvedObject.Name != issuerSecretName {
			continue
		}
		t := eventTime(&e)
		switch {
		case e.Reason == issuerUpdatedReason && strings.Contains(e.Message, "sha256 "+fp[:16]):
			if !ok || t.Before(loadedAt) {
				loadedAt, ok = t, true
			}
		case e.Reason == issuerInvalidReason && t.After(lastWarn):
			lastWarn, warning = t, e.Message
		}
	}
	if ok && !lastWarn.After(loadedAt) {
		warning = ""
	}
	return loadedAt, ok, warning, nil
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.FirstTimestamp.Time
}

func (r *rotation) waitIssuerLoaded(ctx context.Context, fp string) (time.Time, error) {
	deadline := r.now().Add(r.timeout)
	for {
		at, ok, warning, err := r.issuerLoaded(ctx, fp)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			return at, nil
		}
		if r.now().After(deadline) {
			if warning != "" {
				return time.Time{}, fmt.Errorf("the identity service refused the new issuer: %s", warning)
			}
			return time.Time{}, fmt.Errorf("the identity service did not report loading the new issuer within %s: check 'kubectl -n %s logs deploy/conduit-identity'", r.timeout, r.ns)
		}
		if err := r.sleep(ctx, r.poll); err != nil {
			return time.Time{}, err
		}
	}
}

// currentIssuer reads the issuer certificate in the Secret.
func (r *rotation) currentIssuer(ctx context.Context) (*x509.Certificate, []*x509.Certificate, error) {
	s, err := r.k.Client.CoreV1().Secrets(r.ns).Get(ctx, issuerSecretName, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("read Secret %s/%s: %w", r.ns, issuerSecretName, err)
	}
	certs, err := pki.ParseCertificates(s.Data[corev1.TLSCertKey])
	if err != nil {
		return nil, nil, fmt.Errorf("the Secret %s/%s: %w", r.ns, issuerSecretName, err)
	}
	return certs[0], certs[1:], nil
}

// signedByNewAnchor checks that the issuer in the Secret chains to the new anchor.
func (r *rotation) signedByNewAnchor(ctx context.Context) (*x509.Certificate, error) {
	iss, chain, err := r.currentIssuer(ctx)
	if err != nil {
		return nil, err
	}
	if err := pki.VerifyIssuer(&pki.CA{Cert: iss, Chain: chain}, []*x509.Certificate{r.anchor}, r.now()); err != nil {
		return nil, fmt.Errorf("the issuer in the Secret %s/%s is not signed by the new anchor (run step 3 first): %w", r.ns, issuerSecretName, err)
	}
	return iss, nil
}

// Step 4.
func (r *rotation) renewLeaves(ctx context.Context) error {
	iss, err := r.signedByNewAnchor(ctx)
	if err != nil {
		return err
	}
	at, err := r.switchedAt(ctx, iss)
	if err != nil {
		return err
	}
	return r.restartStale(ctx, "holds a certificate from the old issuer", at, func(p *corev1.Pod) bool {
		return !p.CreationTimestamp.After(at)
	})
}

// switchedAt is when the identity service started signing with iss: the
// IssuerUpdated event, else (events expire after an hour) the Secret's last
// change, else now (then every proxy counts as holding an old certificate).
func (r *rotation) switchedAt(ctx context.Context, iss *x509.Certificate) (time.Time, error) {
	at, ok, _, err := r.issuerLoaded(ctx, fingerprint(iss))
	if err != nil || ok {
		return at, err
	}
	s, err := r.k.Client.CoreV1().Secrets(r.ns).Get(ctx, issuerSecretName, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("read Secret %s/%s: %w", r.ns, issuerSecretName, err)
	}
	for _, m := range s.ManagedFields {
		if m.Time != nil && m.Time.After(at) {
			at = m.Time.Time
		}
	}
	if at.IsZero() {
		r.printf("  no %s event for issuer %q and no change time on the Secret: counting every proxy as stale\n", issuerUpdatedReason, iss.Subject.CommonName)
		return r.now(), nil
	}
	r.printf("  no %s event for issuer %q (events expire after an hour): using the Secret's last change, %s\n", issuerUpdatedReason, iss.Subject.CommonName, at.UTC().Format(time.RFC3339))
	return at, nil
}

// Step 5.
func (r *rotation) removeOldAnchors(ctx context.Context) error {
	iss, err := r.signedByNewAnchor(ctx)
	if err != nil {
		return err
	}
	cm, certs, err := r.bundle(ctx)
	if err != nil {
		return err
	}
	if len(certs) == 1 && certs[0].Equal(r.anchor) {
		r.printf("  the bundle holds only the new anchor: nothing to do\n")
		return nil
	}
	// A proxy started with B alone would refuse a certificate of the old issuer.
	at, err := r.switchedAt(ctx, iss)
	if err != nil {
		return err
	}
	left, err := r.staleNames(ctx, func(p *corev1.Pod) bool { return !p.CreationTimestamp.After(at) })
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("%d meshed pods may still hold a certificate from the old issuer (%s): run step 4 first", len(left), strings.Join(left, ", "))
	}
	var old []*x509.Certificate
	for _, c := range certs {
		if !c.Equal(r.anchor) {
			old = append(old, c)
		}
	}
	if err := r.writeBundle(ctx, cm, []*x509.Certificate{r.anchor}); err != nil {
		return err
	}
	r.printf("  removed %s\n  updated ConfigMap %s/%s: %s\n", names(old), r.ns, trustRootsName, names([]*x509.Certificate{r.anchor}))
	return nil
}

// Step 6.
func (r *rotation) dropOldAnchors(ctx context.Context) error {
	cm, certs, err := r.bundle(ctx)
	if err != nil {
		return err
	}
	if len(certs) != 1 || !certs[0].Equal(r.anchor) {
		return errors.New("the bundle still holds other anchors: run step 5 first")
	}
	at := changedAt(cm)
	return r.restartStale(ctx, "still trusts an old anchor", at, func(p *corev1.Pod) bool {
		anchors, known, _ := proxyAnchors(p)
		if known {
			return len(anchors) != 1 || !anchors[0].Equal(r.anchor)
		}
		return startedBefore(p, at)
	})
}

// meshedPods lists the running pods of this control plane's mesh.
func (r *rotation) meshedPods(ctx context.Context) ([]corev1.Pod, error) {
	l, err := r.k.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: controlPlaneNSLabel + "=" + r.ns})
	if err != nil {
		return nil, fmt.Errorf("list meshed pods: %w", err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if _, _, meshed := proxyAnchors(&p); meshed {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	return out, nil
}

// unmeshed lists the running pods of the workloads ws that have no proxy.
func (r *rotation) unmeshed(ctx context.Context, ws []workloadRef) ([]string, error) {
	return workloadPods(ctx, r.k, ws, func(p *corev1.Pod) bool {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return false
		}
		_, _, meshed := proxyAnchors(p)
		return !meshed
	})
}

// restartStale restarts the workloads of the meshed pods for which stale
// holds, the control plane first, waits for their rollouts, and checks that
// no stale pod remains.
//
// since is the change the restart catches up with (zero: none). Creation
// times have a resolution of one second, so restarts wait until the second
// after since has begun: a pod created from then on is known to be newer.
func (r *rotation) restartStale(ctx context.Context, why string, since time.Time, stale func(*corev1.Pod) bool) error {
	pods, err := r.meshedPods(ctx)
	if err != nil {
		return err
	}
	var workloads []workloadRef
	var unmanaged []string
	n := 0
	for i := range pods {
		p := &pods[i]
		if !stale(p) {
			continue
		}
		n++
		w, ok, err := ownerWorkload(ctx, r.k, p)
		if err != nil {
			return err
		}
		if !ok {
			unmanaged = append(unmanaged, p.Namespace+"/"+p.Name)
		} else if !slices.Contains(workloads, w) {
			workloads = append(workloads, w)
		}
	}
	r.printf("  %d of %d meshed pods: proxy %s\n", n, len(pods), why)
	if n == 0 {
		return nil
	}
	slices.SortStableFunc(workloads, func(a, b workloadRef) int {
		ca, cb := a.Namespace == r.ns, b.Namespace == r.ns
		switch {
		case ca && !cb:
			return -1
		case cb && !ca:
			return 1
		}
		return strings.Compare(a.Namespace+"/"+a.Kind+"/"+a.Name, b.Namespace+"/"+b.Kind+"/"+b.Name)
	})
	if !r.restart {
		for _, w := range workloads {
			r.printf("  to restart: kubectl -n %s rollout restart %s/%s\n", w.Namespace, strings.ToLower(w.Kind), w.Name)
		}
		for _, p := range unmanaged {
			ns, name, _ := strings.Cut(p, "/")
			r.printf("  to restart: kubectl -n %s delete pod %s (no workload owns it)\n", ns, name)
		}
		return errors.New("--restart=false: restart the workloads above and wait for their rollouts")
	}
	// The control plane goes first and alone: the identity and destination
	// services must be up before the data plane's new pods ask them.
	var cp, dp []workloadRef
	for _, w := range workloads {
		if w.Namespace == r.ns {
			cp = append(cp, w)
		} else {
			dp = append(dp, w)
		}
	}
	if !since.IsZero() {
		if d := since.Truncate(time.Second).Add(time.Second).Sub(r.now()); d > 0 {
			if err := r.sleep(ctx, d); err != nil {
				return err
			}
		}
	}
	for i, group := range [][]workloadRef{cp, dp} {
		if len(group) == 0 {
			continue
		}
		for _, w := range group {
			if err := restartWorkload(ctx, r.k, w, r.now()); err != nil {
				return err
			}
			r.printf("  restarted %s\n", w)
		}
		if err := r.waitRollouts(ctx, group); err != nil {
			return err
		}
		// The data plane's new pods wait until the control plane's old ones
		// have exited: until then the API server may still call the old
		// injector on the connection it holds, and a pod admitted while
		// that connection closes would come back without a proxy.
		if i == 0 && len(dp) > 0 {
			if err := r.waitTerminated(ctx, group); err != nil {
				return err
			}
		}
		out, err := r.unmeshed(ctx, group)
		if err != nil {
			return err
		}
		if len(out) > 0 {
			return fmt.Errorf("%d pods of the restarted workloads came back without a proxy, out of the mesh: %s. The injector did not inject them "+
				"(it was unreachable and its webhook's failurePolicy let the pods through): check it (mesh check; kubectl -n %s logs deploy/conduit-injector), "+
				"then delete those pods and run this step again", len(out), strings.Join(out, ", "), r.ns)
		}
	}
	left, err := r.staleNames(ctx, stale)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("%d pods still need a restart (no Deployment, StatefulSet or DaemonSet restarts them: delete them, or let their Job finish): %s", len(left), strings.Join(left, ", "))
	}
	r.printf("  every meshed proxy has restarted\n")
	return nil
}
