package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

func TestLoadIssuer(t *testing.T) {
	a := newTestPKI(t, "a")
	b := newTestPKI(t, "b")
	now := time.Now()
	// A three-level chain: anchor -> intermediate -> issuer, the intermediate in tls.crt or in ca.crt.
	mid, err := b.anchor.NewIssuer("b mid", 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	deep := deepIssuer(t, mid)
	deepKey, _ := pki.KeyPEM(deep.Key)
	rsaCA := rsaIssuer(t, a.anchor)
	rsaKey, _ := pki.KeyPEM(rsaCA.Key)
	otherKey, _ := pki.KeyPEM(b.issuer.Key)

	bundleA := pki.CertPEM(a.anchor.Cert)
	bundleAB := append(append([]byte(nil), bundleA...), pki.CertPEM(b.anchor.Cert)...)
	with := func(d map[string][]byte, k string, v []byte) map[string][]byte {
		out := map[string][]byte{}
		for kk, vv := range d {
			out[kk] = vv
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name      string
		secret    map[string][]byte
		bundle    []byte
		at        time.Time
		wantErr   string
		wantInter []*x509.Certificate
	}{
		{name: "issuer of anchor A, bundle A", secret: a.secretData(t), bundle: bundleA, wantInter: []*x509.Certificate{a.issuer.Cert}},
		{name: "issuer of anchor A, bundle A+B", secret: a.secretData(t), bundle: bundleAB, wantInter: []*x509.Certificate{a.issuer.Cert}},
		{name: "issuer of anchor B, bundle A+B", secret: b.secretData(t), bundle: bundleAB, wantInter: []*x509.Certificate{b.issuer.Cert}},
		{name: "without ca.crt", secret: with(a.secretData(t), SecretCAKey, nil), bundle: bundleA, wantInter: []*x509.Certificate{a.issuer.Cert}},
		{name: "intermediate in tls.crt", secret: map[string][]byte{SecretCertKey: append(pki.CertPEM(deep.Cert), pki.CertPEM(mid.Cert)...), SecretKeyKey: deepKey}, bundle: bundleAB, wantInter: []*x509.Certificate{deep.Cert, mid.Cert}},
		{name: "intermediate in ca.crt", secret: map[string][]byte{SecretCertKey: pki.CertPEM(deep.Cert), SecretKeyKey: deepKey, SecretCAKey: pki.CertPEM(mid.Cert)}, bundle: bundleAB, wantInter: []*x509.Certificate{deep.Cert, mid.Cert}},
		{name: "issuer of B, bundle A only", secret: b.secretData(t), bundle: bundleA, wantErr: "does not chain to any of the 1 trust anchor(s)"},
		{name: "missing key", secret: with(a.secretData(t), SecretKeyKey, nil), bundle: bundleA, wantErr: "needs both tls.crt and tls.key"},
		{name: "key of another issuer", secret: with(a.secretData(t), SecretKeyKey, otherKey), bundle: bundleA, wantErr: "key does not match"},
		{name: "garbage certificate", secret: with(a.secretData(t), SecretCertKey, []byte("nope")), bundle: bundleA, wantErr: "no PEM CERTIFICATE"},
		{name: "empty bundle", secret: a.secretData(t), bundle: nil, wantErr: "bundle (ca-bundle.crt) is empty"},
		{name: "garbage bundle", secret: a.secretData(t), bundle: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), wantErr: "trust anchor bundle"},
		{name: "leaf in bundle", secret: a.secretData(t), bundle: append(bundleA, leafPEM(t, a.issuer)...), wantErr: "is not a CA"},
		{name: "RSA issuer", secret: map[string][]byte{SecretCertKey: pki.CertPEM(rsaCA.Cert), SecretKeyKey: rsaKey}, bundle: bundleA, wantErr: "ECDSA P-256"},
		{name: "expired issuer", secret: a.secretData(t), bundle: bundleA, at: now.Add(91 * 24 * time.Hour), wantErr: "expired at"},
		{name: "issuer not yet valid", secret: a.secretData(t), bundle: bundleA, at: now.Add(-time.Hour), wantErr: "not valid before"},
		{name: "bad ca.crt", secret: with(a.secretData(t), SecretCAKey, []byte("nope")), bundle: bundleA, wantErr: "ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := tt.at
			if at.IsZero() {
				at = now
			}
			iss, err := LoadIssuer(tt.secret, tt.bundle, at)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(iss.Intermediates) != len(tt.wantInter) {
				t.Fatalf("%d intermediates, want %d", len(iss.Intermediates), len(tt.wantInter))
			}
			for i, c := range tt.wantInter {
				if !bytes.Equal(iss.Intermediates[i], c.Raw) {
					t.Errorf("intermediate %d is not %q", i, c.Subject.CommonName)
				}
			}
		})
	}
}

// deepIssuer is a CA signed by parent, to test how LoadIssuer finds the
// certificates between an issuer and its anchor.
func deepIssuer(t *testing.T, parent *pki.CA) *pki.CA {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "deep issuer"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &pki.CA{Cert: c, Key: key}
}

func rsaIssuer(t *testing.T, parent *pki.CA) *pki.CA {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "rsa issuer"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &pki.CA{Cert: c, Key: key}
}

func leafPEM(t *testing.T, ca *pki.CA) []byte {
	t.Helper()
	leaf, err := ca.SignLeaf(testID, p256(t).Public(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pki.CertPEM(leaf)
}
