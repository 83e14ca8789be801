package identity

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

// TestValidate: a certificate from the identity service is taken only when
// it chains to the anchors, is valid now, names exactly this identity, is a
// leaf usable on both sides of mTLS and holds the proxy's key. x509's name
// check alone also takes a wildcard or one name among several, which peers
// would read as another identity (the first DNS SAN).
func TestValidate(t *testing.T) {
	const id = "web.ns.serviceaccount.identity.conduit.cluster.local"
	root, err := pki.NewRoot("root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := root.NewIssuer("issuer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherRoot, err := pki.NewRoot("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	anchors := x509.NewCertPool()
	anchors.AddCert(root.Cert)
	inter := x509.NewCertPool()
	inter.AddCert(issuer.Cert)
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(ca *pki.CA, pub *ecdsa.PublicKey, edit func(*x509.Certificate)) *x509.Certificate {
		t.Helper()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(now.UnixNano()),
			Subject:      pkix.Name{CommonName: id},
			DNSNames:     []string{id},
			NotBefore:    now.Add(-time.Minute),
			NotAfter:     now.Add(30 * time.Minute),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		if edit != nil {
			edit(tmpl)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		leaf    *x509.Certificate
		wantErr string // empty: accepted
	}{
		{"exact", sign(issuer, &key.PublicKey, nil), ""},
		{"from pki.SignLeaf", func() *x509.Certificate {
			c, err := issuer.SignLeaf(id, &key.PublicKey, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}(), ""},
		{"another identity", sign(issuer, &key.PublicKey, func(c *x509.Certificate) {
			c.DNSNames = []string{"api.ns.serviceaccount.identity.conduit.cluster.local"}
		}), "want exactly"},
		{"wildcard", sign(issuer, &key.PublicKey, func(c *x509.Certificate) {
			c.DNSNames = []string{"*.ns.serviceaccount.identity.conduit.cluster.local"}
		}), "want exactly"},
		{"another name first", sign(issuer, &key.PublicKey, func(c *x509.Certificate) {
			c.DNSNames = []string{"api.ns.serviceaccount.identity.conduit.cluster.local", id}
		}), "want exactly"},
		{"an extra name", sign(issuer, &key.PublicKey, func(c *x509.Certificate) {
			c.DNSNames = []string{id, "api.ns.serviceaccount.identity.conduit.cluster.local"}
		}), "want exactly"},
		{"no DNS name", sign(issuer, &key.PublicKey, func(c *x509.Certificate) { c.DNSNames = nil }), "want exactly"},
		{"a CA", sign(issuer, &key.PublicKey, func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid = true, true
			c.KeyUsage |= x509.KeyUsageCertSign
		}), "CA certificate"},
		{"server authentication only", sign(issuer, &key.PublicKey, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}), "does not verify"},
		{"client authentication only", sign(issuer, &key.PublicKey, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}), "does not verify"},
		{"another key", sign(issuer, &otherKey.PublicKey, nil), "not for our key"},
		{"another anchor", sign(otherRoot, &key.PublicKey, nil), "does not verify"},
		{"expired", sign(issuer, &key.PublicKey, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = now.Add(-time.Hour), now.Add(-time.Second)
		}), "does not verify"},
		{"not yet valid (clock skew past the back-dating)", sign(issuer, &key.PublicKey, func(c *x509.Certificate) {
			c.NotBefore = now.Add(5 * time.Minute)
		}), "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.leaf, inter, anchors, id, &key.PublicKey)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("accepted %v, want an error with %q", tc.leaf.DNSNames, tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q, want one with %q", err, tc.wantErr)
			}
		})
	}
}
