package cmd

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var idTestNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// fixedCert signs a certificate with fixed fields so that the output is stable.
func fixedCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type fixedChain struct {
	anchor, issuer, leaf *x509.Certificate
}

func newFixedChain(t *testing.T, name string, leafNotAfter time.Time) fixedChain {
	t.Helper()
	rk, _ := pki.NewKey()
	ik, _ := pki.NewKey()
	lk, _ := pki.NewKey()
	anchor := fixedCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root." + name},
		NotBefore: idTestNow.Add(-365 * 24 * time.Hour), NotAfter: idTestNow.Add(3650 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, rk.Public(), rk)
	issuer := fixedCert(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "identity." + name},
		NotBefore: idTestNow.Add(-24 * time.Hour), NotAfter: idTestNow.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign}, anchor, ik.Public(), rk)
	id := "web.emojivoto.serviceaccount.identity.conduit.cluster.local"
	leaf := fixedCert(t, &x509.Certificate{SerialNumber: big.NewInt(0xabcdef), Subject: pkix.Name{CommonName: id}, DNSNames: []string{id},
		NotBefore: idTestNow.Add(-2 * time.Hour), NotAfter: leafNotAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, issuer, lk.Public(), ik)
	return fixedChain{anchor, issuer, leaf}
}

func (c fixedChain) pem() string { return string(pki.CertPEM(c.leaf)) + string(pki.CertPEM(c.issuer)) }

func rootsConfigMap(anchors ...*x509.Certificate) *corev1.ConfigMap {
	var b strings.Builder
	for _, a := range anchors {
		b.Write(pki.CertPEM(a))
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: trustRootsName, Namespace: "conduit"}, Data: map[string]string{trustRootsKey: b.String()}}
}

// serveProxyCertificate points portForward at a fake proxy admin server,
// which only emojivoto/web-0 may reach.
func serveProxyCertificate(t *testing.T, status int, body string) {
	t.Helper()
	serveProxyCertificateOf(t, "emojivoto/web-0", status, body)
}

// serveProxyCertificateOf points portForward at a fake proxy admin server,
// which only pod ("ns/name") may reach.
func serveProxyCertificateOf(t *testing.T, pod string, status int, body string) {
	t.Helper()
	serveProxyAdminOf(t, pod, status, body, "discovery_unreachable 0\n")
}

// serveProxyAdminOf is serveProxyCertificateOf with metrics, the body of
// the proxy's GET /metrics (404 when empty).
func serveProxyAdminOf(t *testing.T, pod string, status int, body, metrics string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/metrics" && metrics != "":
			_, _ = io.WriteString(w, metrics)
			return
		case r.URL.Path != proxyCertificatePath:
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	oldPF, oldNow := portForward, identityNow
	portForward = func(_ context.Context, _ *Kube, ns, name string, port int) (string, func(), error) {
		if ns+"/"+name != pod || port != proxyAdminPort {
			t.Errorf("port-forward to %s/%s:%d, want %s:%d", ns, name, port, pod, proxyAdminPort)
		}
		return strings.TrimPrefix(srv.URL, "http://"), func() {}, nil
	}
	identityNow = func() time.Time { return idTestNow }
	t.Cleanup(func() { portForward, identityNow = oldPF, oldNow })
}

func TestIdentityShow(t *testing.T) {
	a := newFixedChain(t, "a", idTestNow.Add(22*time.Hour))
	b := newFixedChain(t, "b", idTestNow.Add(22*time.Hour))
	expired := newFixedChain(t, "a", idTestNow.Add(-time.Hour))
	tests := []struct {
		name    string
		chain   string
		anchors []*x509.Certificate
		args    []string
		status  int
		golden  string
		wantErr string
	}{
		{name: "trusted", chain: a.pem(), anchors: []*x509.Certificate{a.anchor}, golden: "identity_trusted.golden"},
		{name: "during a rotation", chain: a.pem(), anchors: []*x509.Certificate{b.anchor, a.anchor}, golden: "identity_rotation.golden"},
		{name: "untrusted", chain: a.pem(), anchors: []*x509.Certificate{b.anchor}, golden: "identity_untrusted.golden"},
		{name: "expired", chain: expired.pem(), anchors: []*x509.Certificate{a.anchor}, golden: "identity_expired.golden"},
		{name: "no anchors ConfigMap", chain: a.pem(), golden: "identity_no_anchors.golden"},
		{name: "json", chain: a.pem(), anchors: []*x509.Certificate{a.anchor}, args: []string{"-o", "json"}, golden: "identity_json.golden"},
		{name: "pem", chain: a.pem(), anchors: []*x509.Certificate{a.anchor}, args: []string{"-o", "pem"}},
		{name: "no certificate yet", status: 503, chain: "no certificate yet\n", wantErr: "has no certificate yet: no certificate yet"},
		{name: "old proxy", status: 404, chain: "", wantErr: "404 Not Found"},
		{name: "garbage", chain: "hello", wantErr: "unreadable certificate"},
		{name: "bad output", chain: a.pem(), args: []string{"-o", "yaml"}, wantErr: `unknown output "yaml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := tt.status
			if status == 0 {
				status = 200
			}
			serveProxyCertificate(t, status, tt.chain)
			var k *Kube
			if tt.anchors != nil {
				k, _ = fakeKube(false, rootsConfigMap(tt.anchors...))
			} else {
				k, _ = fakeKube(false)
			}
			out, _, err := runWith(t, k, append([]string{"identity", "-n", "emojivoto", "pod/web-0"}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.golden == "" {
				if out != tt.chain {
					t.Fatalf("-o pem printed %q, want the chain as served", out)
				}
				return
			}
			// The issuer's fingerprint changes with its random signature.
			out = regexp.MustCompile(`"issuerSHA256": "[0-9a-f]{64}"`).ReplaceAllString(out, `"issuerSHA256": "<sha256>"`)
			golden(t, tt.golden, out)
		})
	}
}
