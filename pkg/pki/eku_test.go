package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// ekuCA is a CA named cn with the given extended key usages (none: no
// extension), signed by parent (nil: self-signed).
func ekuCA(t *testing.T, parent *CA, cn string, ekus []x509.ExtKeyUsage, unknown ...asn1.ObjectIdentifier) *CA {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: ekus, UnknownExtKeyUsage: unknown,
	}
	signer, signerKey := tmpl, any(key)
	var chain []*x509.Certificate
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
		chain = append([]*x509.Certificate{parent.Cert}, parent.Chain...)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: c, Key: key, Chain: chain}
}

// leafVerifies reports whether a leaf that iss signs verifies, against root,
// for usage: what a peer proxy checks.
func leafVerifies(t *testing.T, root, iss *CA, usage x509.ExtKeyUsage) bool {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := iss.SignLeaf("web.ns.serviceaccount.identity.conduit.cluster.local", k.Public(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Cert)
	for _, c := range append([]*x509.Certificate{iss.Cert}, iss.Chain...) {
		if !c.Equal(root.Cert) {
			inter.AddCert(c)
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err == nil
}

// TestCheckExtKeyUsage: an issuer or trust anchor whose extended key usages
// leave out serverAuth or clientAuth is refused, with its name and what it
// lacks; the check agrees with Go's verification of the leaves it signs.
func TestCheckExtKeyUsage(t *testing.T) {
	const (
		server = x509.ExtKeyUsageServerAuth
		client = x509.ExtKeyUsageClientAuth
	)
	custom := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
	tests := []struct {
		name    string
		where   string // "issuer" or "root": which certificate carries the usages
		ekus    []x509.ExtKeyUsage
		unknown []asn1.ObjectIdentifier
		wantErr []string // nil: accepted
	}{
		{"no extension", "issuer", nil, nil, nil},
		{"serverAuth and clientAuth", "issuer", []x509.ExtKeyUsage{server, client}, nil, nil},
		{"both and more", "issuer", []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, server, client}, []asn1.ObjectIdentifier{custom}, nil},
		{"anyExtendedKeyUsage", "issuer", []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, nil, nil},
		{"issuer: codeSigning only", "issuer", []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, nil,
			[]string{`certificate "the issuer"`, "lists only codeSigning, without serverAuth and clientAuth"}},
		{"issuer: serverAuth only", "issuer", []x509.ExtKeyUsage{server}, nil,
			[]string{`certificate "the issuer"`, "lists only serverAuth, without clientAuth"}},
		{"issuer: clientAuth and emailProtection", "issuer", []x509.ExtKeyUsage{client, x509.ExtKeyUsageEmailProtection}, nil,
			[]string{"lists only clientAuth, emailProtection, without serverAuth"}},
		{"issuer: only a usage Go does not know", "issuer", nil, []asn1.ObjectIdentifier{custom},
			[]string{"lists only 1.3.6.1.4.1.99999.1, without serverAuth and clientAuth"}},
		{"root: codeSigning only", "root", []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, nil,
			[]string{`certificate "the root"`, "lists only codeSigning, without serverAuth and clientAuth"}},
		{"root: serverAuth and clientAuth", "root", []x509.ExtKeyUsage{server, client}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var root, iss *CA
			if tc.where == "root" {
				root = ekuCA(t, nil, "the root", tc.ekus, tc.unknown...)
				iss = ekuCA(t, root, "the issuer", nil)
			} else {
				root = ekuCA(t, nil, "the root", nil)
				iss = ekuCA(t, root, "the issuer", tc.ekus, tc.unknown...)
			}
			restricted := map[string]*CA{"root": root, "issuer": iss}[tc.where]
			err := CheckExtKeyUsage(restricted.Cert)
			// The premise: the check refuses exactly what peers would refuse.
			peersAccept := leafVerifies(t, root, iss, server) && leafVerifies(t, root, iss, client)
			if (err == nil) != peersAccept {
				t.Fatalf("CheckExtKeyUsage = %v, but peers accept the leaves: %t", err, peersAccept)
			}
			verr := VerifyIssuer(iss, []*x509.Certificate{root.Cert}, time.Now())
			if tc.wantErr == nil {
				if err != nil || verr != nil {
					t.Fatalf("refused: CheckExtKeyUsage = %v, VerifyIssuer = %v", err, verr)
				}
				return
			}
			if verr == nil {
				t.Fatal("VerifyIssuer accepted the issuer")
			}
			for _, e := range []error{err, verr} {
				if !errors.Is(e, ErrExtKeyUsage) {
					t.Errorf("%v does not wrap ErrExtKeyUsage", e)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(e.Error(), want) {
						t.Errorf("error %q does not say %q", e, want)
					}
				}
			}
		})
	}
}

// TestVerifyIssuerIntermediateExtKeyUsage: a restricted certificate between
// the issuer and its root is found too.
func TestVerifyIssuerIntermediateExtKeyUsage(t *testing.T) {
	root := ekuCA(t, nil, "root", nil)
	mid := ekuCA(t, root, "the intermediate", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	iss := ekuCA(t, mid, "issuer", nil)
	err := VerifyIssuer(iss, []*x509.Certificate{root.Cert}, time.Now())
	if !errors.Is(err, ErrExtKeyUsage) || !strings.Contains(err.Error(), `"the intermediate"`) || !strings.Contains(err.Error(), "without clientAuth") {
		t.Fatalf("err = %v, want the intermediate refused for lacking clientAuth", err)
	}
}
