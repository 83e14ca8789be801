package pki

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestChain(t *testing.T) {
	root, err := NewRoot("root.conduit.dev", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := root.NewIssuer("identity.conduit.cluster.local", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !iss.Cert.NotAfter.Equal(root.Cert.NotAfter) {
		t.Errorf("issuer outlives its root: %v > %v", iss.Cert.NotAfter, root.Cert.NotAfter)
	}
	if err := VerifyIssuer(iss, []*x509.Certificate{root.Cert}, time.Now()); err != nil {
		t.Fatal(err)
	}
	other, _ := NewRoot("other", time.Hour)
	if err := VerifyIssuer(iss, []*x509.Certificate{other.Cert}, time.Now()); err == nil {
		t.Fatal("issuer verified against an unrelated root")
	}
	k, _ := NewKey()
	leaf, err := iss.SignLeaf("web.ns.serviceaccount.identity.conduit.cluster.local", k.Public(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	inter := x509.NewCertPool()
	inter.AddCert(iss.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "web.ns.serviceaccount.identity.conduit.cluster.local", Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}

func TestLoadCA(t *testing.T) {
	root, _ := NewRoot("root", time.Hour)
	iss, _ := root.NewIssuer("issuer", time.Hour)
	keyPEM, err := KeyPEM(iss.Key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadCA(append(CertPEM(iss.Cert), CertPEM(root.Cert)...), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Chain) != 1 || !got.Cert.Equal(iss.Cert) {
		t.Fatalf("unexpected CA %+v", got)
	}
	otherKey, _ := NewKey()
	otherPEM, _ := KeyPEM(otherKey)
	for name, tc := range map[string]struct {
		cert, key []byte
		want      string
	}{
		"mismatched key":  {CertPEM(iss.Cert), otherPEM, "does not match"},
		"no cert":         {[]byte("junk"), keyPEM, "no PEM CERTIFICATE"},
		"no key":          {CertPEM(iss.Cert), []byte("junk"), "no PEM private key block"},
		"parameters only": {CertPEM(iss.Cert), ecParamsP256, "no PEM private key block"},
	} {
		if _, err := LoadCA(tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

// ecParamsP256 is the block `openssl ecparam -name prime256v1 -genkey` writes
// before the key: the named curve's OID.
var ecParamsP256 = []byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n")

func TestParseKeyLayouts(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := KeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	sec1DER, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})
	for _, tc := range []struct {
		name string
		pem  []byte
	}{
		{"PKCS#8", pkcs8},
		{"SEC 1", sec1},
		{"openssl ecparam -genkey (parameters, then SEC 1)", append(append([]byte(nil), ecParamsP256...), sec1...)},
		{"text before the key", append([]byte("# issuer key\n"), pkcs8...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.pem)
			if err != nil {
				t.Fatal(err)
			}
			if !k.PublicKey.Equal(got.Public()) {
				t.Error("parsed a different key")
			}
		})
	}
}

func TestSignLeafUntil(t *testing.T) {
	root, err := NewRoot("root", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name     string
		validity time.Duration
		limit    time.Time
		want     time.Time // zero: refused
	}{
		{"lifetime shorter than both", time.Hour, now.Add(2 * time.Hour), now.Add(time.Hour)},
		{"capped at the limit", time.Hour, now.Add(30 * time.Minute), now.Add(30 * time.Minute)},
		{"capped at the issuer", 48 * time.Hour, now.Add(72 * time.Hour), root.Cert.NotAfter},
		{"limit passed", time.Hour, now.Add(-time.Second), time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := root.SignLeafUntil("x.test", k.Public(), tc.validity, tc.limit)
			if tc.want.IsZero() {
				if err == nil {
					t.Fatalf("signed a leaf expiring at %s, want an error", leaf.NotAfter)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := leaf.NotAfter.Sub(tc.want); d > time.Second || d < -2*time.Second {
				t.Errorf("NotAfter %s, want about %s", leaf.NotAfter, tc.want)
			}
		})
	}
}
