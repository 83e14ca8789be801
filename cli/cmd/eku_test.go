package cmd

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

// ekuCA is a CA named cn with the extended key usages ekus (none: no
// extension), signed by parent (nil: self-signed), valid for a year.
func ekuCA(t *testing.T, parent *pki.CA, cn string, ekus ...x509.ExtKeyUsage) *pki.CA {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, ExtKeyUsage: ekus}
	if parent == nil {
		return &pki.CA{Cert: fixedCert(t, tmpl, nil, key.Public(), key), Key: key}
	}
	return &pki.CA{Cert: fixedCert(t, tmpl, parent.Cert, key.Public(), parent.Key), Key: key}
}

// TestInstallRefusesRestrictedExtKeyUsage: install refuses the trust anchors
// and issuer the identity service would refuse for their extended key
// usages (every workload certificate under them would fail verification).
func TestInstallRefusesRestrictedExtKeyUsage(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := func(prefix string, root, iss *pki.CA) []string {
		k, err := pki.KeyPEM(iss.Key)
		if err != nil {
			t.Fatal(err)
		}
		return []string{"--identity-trust-anchors-file", write(prefix+"-ca.crt", pki.CertPEM(root.Cert)),
			"--identity-issuer-certificate-file", write(prefix+"-issuer.crt", pki.CertPEM(iss.Cert)),
			"--identity-issuer-key-file", write(prefix+"-issuer.key", k)}
	}
	root := ekuCA(t, nil, "root.test")
	csRoot := ekuCA(t, nil, "code-signing root", x509.ExtKeyUsageCodeSigning)
	tests := []struct {
		name    string
		args    []string
		wantErr string // empty: accepted
	}{
		{"issuer with serverAuth and clientAuth", files("mesh", root, ekuCA(t, root, "mesh issuer", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)), ""},
		{"issuer restricted to codeSigning", files("cs", root, ekuCA(t, root, "code-signing issuer", x509.ExtKeyUsageCodeSigning)),
			`install: pki: issuer "code-signing issuer": pki: certificate "code-signing issuer": extended key usages exclude mesh TLS: it lists only codeSigning, without serverAuth and clientAuth`},
		{"issuer restricted to serverAuth", files("srv", root, ekuCA(t, root, "server issuer", x509.ExtKeyUsageServerAuth)),
			`certificate "server issuer": extended key usages exclude mesh TLS: it lists only serverAuth, without clientAuth`},
		{"anchor restricted to codeSigning", files("csroot", csRoot, ekuCA(t, csRoot, "issuer")),
			`install: trust anchors: pki: certificate "code-signing root": extended key usages exclude mesh TLS: it lists only codeSigning, without serverAuth and clientAuth`},
		{"external issuer, anchor restricted to codeSigning", []string{"--identity-external-issuer", "--identity-trust-anchors-file", write("ext-ca.crt", pki.CertPEM(csRoot.Cert))},
			`install: trust anchors: pki: certificate "code-signing root"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runWith(t, nil, append([]string{"install", "--ignore-cluster"}, tt.args...)...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "sign the issuer with one of the trust anchors") {
				t.Errorf("err = %v: the hint for an issuer of other anchors does not apply", err)
			}
		})
	}
}
