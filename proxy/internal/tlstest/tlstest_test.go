package tlstest

import (
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

// TestClientHello: one whole handshake record, a ClientHello.
func TestClientHello(t *testing.T) {
	b := ClientHello(t, "web.test", []string{"h2"})
	if len(b) < 5 || b[0] != 22 || len(b) != 5+int(b[3])<<8|int(b[4]) || b[5] != 1 {
		t.Fatalf("not one ClientHello record: % x", b[:min(len(b), 8)])
	}
}

// TestLeaf: the certificate verifies for its name against its CA, with
// the key that goes with it.
func TestLeaf(t *testing.T) {
	ca, err := pki.NewRoot("root.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := Leaf(t, ca, "web.test", time.Hour)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "web.test", Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatal(err)
	}
	key, ok := c.PrivateKey.(crypto.Signer)
	if !ok || !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.Leaf.PublicKey) {
		t.Fatal("the private key is not the certificate's")
	}
}
