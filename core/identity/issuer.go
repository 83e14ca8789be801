package identity

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

// Keys of the issuer Secret (the kubernetes.io/tls layout cert-manager writes)
// and of the trust-anchors ConfigMap.
const (
	SecretCertKey   = "tls.crt"
	SecretKeyKey    = "tls.key"
	SecretCAKey     = "ca.crt"
	AnchorBundleKey = "ca-bundle.crt"
)

// Issuer is a validated issuer with the trust anchors it chains to.
type Issuer struct {
	CA      *pki.CA
	Anchors []*x509.Certificate
	// Intermediates is what Certify returns after the leaf: the issuer, then
	// the certificates between it and its anchor (anchors themselves excluded).
	Intermediates [][]byte
	// Path is the verified chain: the issuer, the certificates between it and
	// its anchor, the anchor.
	Path     []*x509.Certificate
	LoadedAt time.Time
}

// FirstToExpire is the certificate of Path that expires first: a leaf is of
// no use past its NotAfter, so leaves are capped at it and Certify refuses
// once it has expired (external issuers may outlive their own chain).
func (i *Issuer) FirstToExpire() *x509.Certificate {
	first := i.CA.Cert
	for _, c := range i.Path {
		if c.NotAfter.Before(first.NotAfter) {
			first = c
		}
	}
	return first
}

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// String names the issuer for logs and events.
func (i *Issuer) String() string {
	return fmt.Sprintf("%q (sha256 %s, expires %s)", i.CA.Cert.Subject.CommonName, Fingerprint(i.CA.Cert)[:16], i.CA.Cert.NotAfter.UTC().Format(time.RFC3339))
}

// LoadIssuer builds an Issuer from the issuer Secret's data and the trust
// anchor bundle (PEM, several roots allowed) and validates it: the key matches
// the certificate, the certificate is a CA valid at now, uses an ECDSA P-256
// key, and chains to one of the anchors (the bundle is what proxies trust;
// ca.crt only contributes intermediates); neither the anchors nor any
// certificate of the issuer's chain restricts its extended key usages so
// that the leaves would be refused (pki.CheckExtKeyUsage).
func LoadIssuer(secret map[string][]byte, bundlePEM []byte, now time.Time) (*Issuer, error) {
	certPEM, keyPEM := secret[SecretCertKey], secret[SecretKeyKey]
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return nil, fmt.Errorf("identity: issuer Secret needs both %s and %s (the kubernetes.io/tls layout)", SecretCertKey, SecretKeyKey)
	}
	if len(bundlePEM) == 0 {
		return nil, fmt.Errorf("identity: the trust anchor bundle (%s) is empty", AnchorBundleKey)
	}
	anchors, err := pki.ParseCertificates(bundlePEM)
	if err != nil {
		return nil, fmt.Errorf("identity: trust anchor bundle: %w", err)
	}
	for _, a := range anchors {
		if !a.IsCA {
			return nil, fmt.Errorf("identity: trust anchor %q is not a CA certificate", a.Subject.CommonName)
		}
		// Proxies trust the whole bundle: an anchor no workload certificate
		// can chain to is a mistake (a root meant for code signing), and the
		// issuer a rotation moves to under it would sign only refused leaves.
		if err := pki.CheckExtKeyUsage(a); err != nil {
			return nil, fmt.Errorf("identity: trust anchor bundle: %w", err)
		}
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: issuer: %w", err)
	}
	if k, ok := ca.Key.Public().(*ecdsa.PublicKey); !ok || k.Curve.Params().Name != "P-256" {
		return nil, fmt.Errorf("identity: issuer %q: key must be ECDSA P-256, got %T", ca.Cert.Subject.CommonName, ca.Key.Public())
	}
	if now.Before(ca.Cert.NotBefore) {
		return nil, fmt.Errorf("identity: issuer %q is not valid before %s", ca.Cert.Subject.CommonName, ca.Cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("identity: issuer %q expired at %s", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	// Intermediates may come after the issuer in tls.crt or, with some
	// external issuers, in ca.crt; anchors themselves are never sent.
	inter := x509.NewCertPool()
	for _, c := range ca.Chain {
		inter.AddCert(c)
	}
	if caPEM := secret[SecretCAKey]; len(caPEM) > 0 {
		extra, err := pki.ParseCertificates(caPEM)
		if err != nil {
			return nil, fmt.Errorf("identity: issuer Secret %s: %w", SecretCAKey, err)
		}
		for _, c := range extra {
			inter.AddCert(c)
		}
	}
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	chains, err := ca.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("identity: issuer %q does not chain to any of the %d trust anchor(s) in the bundle: %w", ca.Cert.Subject.CommonName, len(anchors), err)
	}
	// The leaves must verify at the peers for serverAuth and clientAuth:
	// no certificate of the chain may restrict its extended key usages
	// below that (x509 verification nests them).
	path, err := pki.MeshChain(chains) // issuer, intermediates..., anchor
	if err != nil {
		return nil, fmt.Errorf("identity: issuer %q: %w", ca.Cert.Subject.CommonName, err)
	}
	intermediates := make([][]byte, 0, len(path))
	for _, c := range path[:len(path)-1] {
		intermediates = append(intermediates, c.Raw)
	}
	if len(path) == 1 {
		// The issuer is itself an anchor: send it so that the chain is complete.
		intermediates = append(intermediates, ca.Cert.Raw)
	}
	return &Issuer{CA: ca, Anchors: anchors, Intermediates: intermediates, Path: path, LoadedAt: now}, nil
}

// IssuerSource gives Certify the current issuer (nil when none is loaded yet).
type IssuerSource interface {
	Current() *Issuer
}

// IssuerStore holds the last good issuer; it is safe for concurrent use.
type IssuerStore struct{ p atomic.Pointer[Issuer] }

// Current implements IssuerSource.
func (s *IssuerStore) Current() *Issuer { return s.p.Load() }

// Set replaces the issuer.
func (s *IssuerStore) Set(i *Issuer) { s.p.Store(i) }

// ErrNoIssuer is returned while no valid issuer has been loaded.
var ErrNoIssuer = errors.New("identity: no valid issuer loaded yet")
