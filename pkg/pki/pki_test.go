package pki

import (
	"crypto/x509"
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
		"mismatched key": {CertPEM(iss.Cert), otherPEM, "does not match"},
		"no cert":        {[]byte("junk"), keyPEM, "no PEM CERTIFICATE"},
		"no key":         {CertPEM(iss.Cert), []byte("junk"), "no PEM block"},
	} {
		if _, err := LoadCA(tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
