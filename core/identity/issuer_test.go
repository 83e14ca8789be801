package identity

import (
	"bytes"
	"crypto"
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

	// Extended key usages: x509 verification nests them, so a CA of the
	// chain that leaves out serverAuth or clientAuth makes every leaf fail.
	ekuSecret := func(iss *pki.CA, ca *x509.Certificate) map[string][]byte {
		k, err := pki.KeyPEM(iss.Key)
		if err != nil {
			t.Fatal(err)
		}
		d := map[string][]byte{SecretCertKey: pki.CertPEM(iss.Cert), SecretKeyKey: k}
		if ca != nil {
			d[SecretCAKey] = pki.CertPEM(ca)
		}
		return d
	}
	codeSigning, serverAuth, clientAuth := x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth
	csIssuer := ekuCA(t, a.anchor, "code-signing issuer", codeSigning)
	serverIssuer := ekuCA(t, a.anchor, "server-only issuer", serverAuth)
	meshIssuer := ekuCA(t, a.anchor, "mesh issuer", serverAuth, clientAuth)
	anyIssuer := ekuCA(t, a.anchor, "any issuer", x509.ExtKeyUsageAny)
	clientMid := ekuCA(t, a.anchor, "client-only intermediate", clientAuth)
	underClientMid := ekuCA(t, clientMid, "issuer under it")
	csRoot := ekuCA(t, nil, "code-signing root", codeSigning)
	underCSRoot := ekuCA(t, csRoot, "issuer of the code-signing root")
	bundleACS := append(append([]byte(nil), bundleA...), pki.CertPEM(csRoot.Cert)...)
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
		{name: "issuer with serverAuth and clientAuth", secret: ekuSecret(meshIssuer, nil), bundle: bundleA, wantInter: []*x509.Certificate{meshIssuer.Cert}},
		{name: "issuer with anyExtendedKeyUsage", secret: ekuSecret(anyIssuer, nil), bundle: bundleA, wantInter: []*x509.Certificate{anyIssuer.Cert}},
		{name: "issuer restricted to codeSigning", secret: ekuSecret(csIssuer, nil), bundle: bundleA,
			wantErr: `identity: issuer "code-signing issuer": pki: certificate "code-signing issuer": extended key usages exclude mesh TLS: it lists only codeSigning, without serverAuth and clientAuth`},
		{name: "issuer restricted to serverAuth", secret: ekuSecret(serverIssuer, nil), bundle: bundleA,
			wantErr: `certificate "server-only issuer": extended key usages exclude mesh TLS: it lists only serverAuth, without clientAuth`},
		{name: "intermediate restricted to clientAuth", secret: ekuSecret(underClientMid, clientMid.Cert), bundle: bundleA,
			wantErr: `identity: issuer "issuer under it": pki: certificate "client-only intermediate": extended key usages exclude mesh TLS: it lists only clientAuth, without serverAuth`},
		{name: "anchor restricted to codeSigning", secret: ekuSecret(underCSRoot, nil), bundle: pki.CertPEM(csRoot.Cert),
			wantErr: `identity: trust anchor bundle: pki: certificate "code-signing root": extended key usages exclude mesh TLS: it lists only codeSigning, without serverAuth and clientAuth`},
		{name: "a restricted anchor beside the issuer's", secret: a.secretData(t), bundle: bundleACS,
			wantErr: `certificate "code-signing root": extended key usages exclude mesh TLS`},
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

// ekuCA is a CA named cn with the extended key usages ekus (none: no
// extension), signed by parent (nil: self-signed).
func ekuCA(t *testing.T, parent *pki.CA, cn string, ekus ...x509.ExtKeyUsage) *pki.CA {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, ExtKeyUsage: ekus,
	}
	signer, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: c, Key: key}
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
