package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

const (
	testCPNS   = "conduit"
	testDomain = "cluster.local"
	testID     = "web.emojivoto.serviceaccount.identity.conduit.cluster.local"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testPKI is an anchor and an issuer it signed.
type testPKI struct {
	anchor, issuer *pki.CA
}

func newTestPKI(t testing.TB, name string) testPKI {
	t.Helper()
	root, err := pki.NewRoot(name+" anchor", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := root.NewIssuer(name+" issuer", 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return testPKI{anchor: root, issuer: iss}
}

// secretData is the issuer Secret's data in the cert-manager layout.
func (p testPKI) secretData(t testing.TB) map[string][]byte {
	t.Helper()
	key, err := pki.KeyPEM(p.issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{SecretCertKey: pki.CertPEM(p.issuer.Cert), SecretKeyKey: key, SecretCAKey: pki.CertPEM(p.anchor.Cert)}
}

func (p testPKI) loaded(t testing.TB) *Issuer {
	t.Helper()
	iss, err := LoadIssuer(p.secretData(t), pki.CertPEM(p.anchor.Cert), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type csrOpt func(*x509.CertificateRequest)

func withIP(tmpl *x509.CertificateRequest) { tmpl.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")} }
func withURI(tmpl *x509.CertificateRequest) {
	tmpl.URIs = []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/x/sa/y"}}
}

func makeCSR(t testing.TB, key crypto.Signer, names []string, opts ...csrOpt) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}, DNSNames: names}
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// fakeTokens maps a token to the username it authenticates as, or to an error.
type fakeTokens map[string]any

func (f fakeTokens) Validate(_ context.Context, token string) (string, error) {
	switch v := f[token].(type) {
	case string:
		return v, nil
	case error:
		return "", v
	}
	return "", &TokenError{Kind: TokenInvalid, Detail: "unknown token"}
}

type staticIssuer struct{ iss *Issuer }

func (s staticIssuer) Current() *Issuer { return s.iss }

func mustP384(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
