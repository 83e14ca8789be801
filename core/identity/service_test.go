package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newTestService(t testing.TB, tokens TokenValidator, src IssuerSource) (*Service, *Metrics) {
	t.Helper()
	m := NewMetrics(nil)
	s, err := NewService(Config{ControlPlaneNamespace: testCPNS, TrustDomain: testDomain, CertLifetime: 24 * time.Hour}, tokens, src, m, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	return s, m
}

func TestCertifyIssuesLeaf(t *testing.T) {
	p := newTestPKI(t, "a")
	s, m := newTestService(t, fakeTokens{"good": "system:serviceaccount:emojivoto:web"}, staticIssuer{p.loaded(t)})
	key := p256(t)
	before := time.Now()
	resp, err := s.Certify(context.Background(), &identityv1.CertifyRequest{
		Identity: testID, Token: []byte("good"), CertificateSigningRequest: makeCSR(t, key, []string{testID}),
	})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != testID {
		t.Errorf("leaf DNS SANs = %q, want [%q]", leaf.DNSNames, testID)
	}
	if len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf has extra SANs: %v %v %v", leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("leaf does not certify the CSR's key")
	}
	if life := leaf.NotAfter.Sub(before); life < 23*time.Hour+59*time.Minute || life > 24*time.Hour+time.Minute {
		t.Errorf("leaf lifetime %s, want about 24h", life)
	}
	if !resp.GetValidUntil().AsTime().Equal(leaf.NotAfter) {
		t.Errorf("valid_until %s != leaf NotAfter %s", resp.GetValidUntil().AsTime(), leaf.NotAfter)
	}
	if n := len(resp.GetIntermediateCertificates()); n != 1 {
		t.Fatalf("%d intermediates, want 1 (the issuer)", n)
	}
	inter, err := x509.ParseCertificate(resp.GetIntermediateCertificates()[0])
	if err != nil {
		t.Fatal(err)
	}
	if !inter.Equal(p.issuer.Cert) {
		t.Errorf("first intermediate is %q, want the issuer", inter.Subject.CommonName)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.anchor.Cert)
	inters.AddCert(inter)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: testID,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify against the anchor: %v", err)
	}
	if got := testutil.ToFloat64(m.issued); got != 1 {
		t.Errorf("issued = %v, want 1", got)
	}
}

func TestCertifyRefusals(t *testing.T) {
	p := newTestPKI(t, "a")
	good := p.loaded(t)
	key := p256(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	okCSR := makeCSR(t, key, []string{testID})
	badSig := append([]byte(nil), okCSR...)
	badSig[len(badSig)-5] ^= 0xff // inside the signature
	tokens := fakeTokens{
		"good":     "system:serviceaccount:emojivoto:web",
		"other":    "system:serviceaccount:emojivoto:admin",
		"user":     "kubernetes-admin",
		"expired":  &TokenError{Kind: TokenExpired, Detail: "the token expired at 2020-01-01T00:00:00Z"},
		"audience": &TokenError{Kind: TokenWrongAudience, Detail: `the token is for audience ["https://kubernetes.default.svc"]`},
		"deleted":  &TokenError{Kind: TokenAccountNotFound, Detail: "serviceaccount web not found"},
		"garbage":  &TokenError{Kind: TokenMalformed, Detail: "the token has 1 dot-separated parts"},
		"down":     &TokenError{Kind: TokenReviewFailed, Detail: "connection refused"},
		"weird":    errors.New("boom"),
	}
	tests := []struct {
		name     string
		identity string
		token    string
		csr      []byte
		issuer   *Issuer
		code     codes.Code
		reason   Reason
		msg      string
	}{
		{"no identity", "", "good", okCSR, good, codes.InvalidArgument, ReasonBadIdentity, "names no identity"},
		{"foreign trust domain", "web.emojivoto.serviceaccount.identity.conduit.example.org", "good", okCSR, good, codes.InvalidArgument, ReasonBadIdentity, "does not end in"},
		{"no namespace", "web.serviceaccount.identity.conduit.cluster.local", "good", okCSR, good, codes.InvalidArgument, ReasonBadIdentity, "is not <sa>.<ns>"},
		{"no CSR", testID, "good", nil, good, codes.InvalidArgument, ReasonCSRMalformed, "no certificate signing request"},
		{"malformed CSR", testID, "good", []byte("not DER"), good, codes.InvalidArgument, ReasonCSRMalformed, "not DER PKCS#10"},
		{"PEM CSR", testID, "good", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: okCSR}), good, codes.InvalidArgument, ReasonCSRMalformed, "PEM-encoded; send the DER bytes"},
		{"bad CSR signature", testID, "good", badSig, good, codes.InvalidArgument, ReasonCSRBadSignature, "signature does not verify"},
		{"RSA key", testID, "good", makeCSR(t, rsaKey, []string{testID}), good, codes.InvalidArgument, ReasonCSRUnsupportedKey, "key is rsa.PublicKey"},
		{"P-384 key", testID, "good", makeCSR(t, mustP384(t), []string{testID}), good, codes.InvalidArgument, ReasonCSRUnsupportedKey, "ECDSA P-384"},
		{"CSR for another identity", testID, "good", makeCSR(t, key, []string{"admin.emojivoto.serviceaccount.identity.conduit.cluster.local"}), good, codes.InvalidArgument, ReasonCSRNames, "must be exactly"},
		{"CSR with two names", testID, "good", makeCSR(t, key, []string{testID, "evil.example.com"}), good, codes.InvalidArgument, ReasonCSRNames, "must be exactly"},
		{"CSR without names", testID, "good", makeCSR(t, key, nil), good, codes.InvalidArgument, ReasonCSRNames, "must be exactly"},
		{"CSR with IP SAN", testID, "good", makeCSR(t, key, []string{testID}, withIP), good, codes.InvalidArgument, ReasonCSRNames, "IP, URI or e-mail"},
		{"CSR with URI SAN", testID, "good", makeCSR(t, key, []string{testID}, withURI), good, codes.InvalidArgument, ReasonCSRNames, "IP, URI or e-mail"},
		{"malformed token", testID, "garbage", okCSR, good, codes.InvalidArgument, Reason(TokenMalformed), "dot-separated"},
		{"expired token", testID, "expired", okCSR, good, codes.Unauthenticated, Reason(TokenExpired), "expired at"},
		{"wrong audience", testID, "audience", okCSR, good, codes.Unauthenticated, Reason(TokenWrongAudience), "audience"},
		{"deleted ServiceAccount", testID, "deleted", okCSR, good, codes.Unauthenticated, Reason(TokenAccountNotFound), "not found"},
		{"unknown token", testID, "nope", okCSR, good, codes.Unauthenticated, Reason(TokenInvalid), "unknown token"},
		{"API server down", testID, "down", okCSR, good, codes.Unavailable, Reason(TokenReviewFailed), "connection refused"},
		{"validator error", testID, "weird", okCSR, good, codes.Unavailable, Reason(TokenReviewFailed), "boom"},
		{"forged identity", testID, "other", okCSR, good, codes.PermissionDenied, ReasonIdentityMismatch, "not the requested"},
		{"user token", testID, "user", okCSR, good, codes.PermissionDenied, ReasonNotServiceAccount, "not a ServiceAccount"},
		{"no issuer", testID, "good", okCSR, nil, codes.Unavailable, ReasonNoIssuer, "no valid issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, m := newTestService(t, tokens, staticIssuer{tt.issuer})
			_, err := s.Certify(context.Background(), &identityv1.CertifyRequest{Identity: tt.identity, Token: []byte(tt.token), CertificateSigningRequest: tt.csr})
			st, ok := status.FromError(err)
			if !ok || err == nil {
				t.Fatalf("err = %v, want a gRPC status", err)
			}
			if st.Code() != tt.code {
				t.Errorf("code = %s, want %s (%s)", st.Code(), tt.code, st.Message())
			}
			if !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("message %q does not contain %q", st.Message(), tt.msg)
			}
			if got := testutil.ToFloat64(m.failures.WithLabelValues(string(tt.reason))); got != 1 {
				t.Errorf("failures{reason=%q} = %v, want 1", tt.reason, got)
			}
			if got := testutil.ToFloat64(m.issued); got != 0 {
				t.Errorf("issued = %v, want 0", got)
			}
		})
	}
}

func TestEveryReasonHasItsCode(t *testing.T) {
	for _, r := range allReasons {
		if r != ReasonSignFailed && codeOf(r) == codes.Internal {
			t.Errorf("reason %q maps to Internal", r)
		}
	}
}

func TestCertifyRefusesExpiredIssuer(t *testing.T) {
	iss := newTestPKI(t, "a").loaded(t)
	expired := *iss.CA.Cert
	expired.NotAfter = time.Now().Add(-time.Minute)
	ca := *iss.CA
	ca.Cert = &expired
	iss.CA = &ca
	s, _ := newTestService(t, fakeTokens{"good": "system:serviceaccount:emojivoto:web"}, staticIssuer{iss})
	_, err := s.Certify(context.Background(), &identityv1.CertifyRequest{Identity: testID, Token: []byte("good"), CertificateSigningRequest: makeCSR(t, p256(t), []string{testID})})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v, want Unavailable about the expired issuer", err)
	}
}

func TestLogLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLogLimiter(time.Minute)
	l.now = func() time.Time { return now }
	type step struct {
		advance time.Duration
		reason  Reason
		log     bool
		held    int
	}
	steps := []step{
		{0, ReasonCSRNames, true, 0},
		{time.Second, ReasonCSRNames, false, 0},
		{time.Second, ReasonCSRNames, false, 0},
		{time.Second, ReasonIdentityMismatch, true, 0}, // another cause logs at once
		{time.Minute, ReasonCSRNames, true, 2},
		{time.Second, ReasonCSRNames, false, 0},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		ok, held := l.allow(s.reason)
		if ok != s.log || held != s.held {
			t.Errorf("step %d: allow(%s) = %v, %d; want %v, %d", i, s.reason, ok, held, s.log, s.held)
		}
	}
}

// TestCertifyLogs checks what a refusal writes to the log: the cause an
// operator needs (why the TokenReview failed), never the token, and the
// client's message without the API server's internals.
func TestCertifyLogs(t *testing.T) {
	p := newTestPKI(t, "a")
	const secretToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzM2NyZXQifQ.c2VjcmV0LXNpZ25hdHVyZQ"
	forbidden := errors.New(`tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:conduit:conduit-identity" cannot create resource "tokenreviews"`)
	tests := []struct {
		name       string
		err        error
		code       codes.Code
		wantLog    string
		notInReply string
	}{
		{
			name:       "TokenReview forbidden (RBAC)",
			err:        &TokenError{Kind: TokenReviewFailed, Detail: "the TokenReview request to the API server failed", Err: forbidden},
			code:       codes.Unavailable,
			wantLog:    "cannot create resource",
			notInReply: "cannot create resource",
		},
		{
			name:    "token refused",
			err:     &TokenError{Kind: TokenInvalid, Detail: "the API server refused the token: invalid bearer token"},
			code:    codes.Unauthenticated,
			wantLog: "invalid bearer token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			s, _ := newTestService(t, fakeTokens{secretToken: tt.err}, staticIssuer{p.loaded(t)})
			s.log = slog.New(slog.NewJSONHandler(&buf, nil))
			_, err := s.Certify(context.Background(), &identityv1.CertifyRequest{Identity: testID, Token: []byte(secretToken), CertificateSigningRequest: makeCSR(t, p256(t), []string{testID})})
			if status.Code(err) != tt.code {
				t.Fatalf("err = %v, want code %s", err, tt.code)
			}
			logged := buf.String()
			if !strings.Contains(logged, tt.wantLog) {
				t.Errorf("log %q does not contain %q", logged, tt.wantLog)
			}
			if strings.Contains(logged, secretToken) || strings.Contains(logged, "c2VjcmV0LXNpZ25hdHVyZQ") {
				t.Errorf("log contains the token: %s", logged)
			}
			if tt.notInReply != "" && strings.Contains(status.Convert(err).Message(), tt.notInReply) {
				t.Errorf("reply %q leaks %q", status.Convert(err).Message(), tt.notInReply)
			}
		})
	}
}

// selfSignedCA is a root CA valid from notBefore to notAfter.
func selfSignedCA(t *testing.T, cn string, notBefore, notAfter time.Time) *pki.CA {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 2,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: c, Key: key}
}

// TestCertifyCapsAtChainExpiry: an issuer may outlive its anchor or
// intermediate (external issuers do not always cap it). A leaf must not
// outlive its chain (valid_until drives the proxy's renewal), and once a
// certificate of the chain has expired Certify refuses instead of signing
// leaves no peer accepts.
func TestCertifyCapsAtChainExpiry(t *testing.T) {
	now := time.Now()
	shortAnchor := selfSignedCA(t, "short anchor", now.Add(-time.Hour), now.Add(3*time.Hour))
	expiredAnchor := selfSignedCA(t, "expired anchor", now.Add(-3*time.Hour), now.Add(-time.Minute))
	longAnchor := selfSignedCA(t, "long anchor", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	midKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	shortMid := &pki.CA{Cert: caSignedBy(t, longAnchor, midKey, "short mid", 21, now.Add(2*time.Hour)), Key: midKey}

	issuerUnder := func(parent *pki.CA, chain ...*x509.Certificate) map[string][]byte {
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(31), Subject: pkix.Name{CommonName: "long issuer"},
			NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := pki.KeyPEM(key)
		if err != nil {
			t.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		for _, c := range chain {
			certPEM = append(certPEM, pki.CertPEM(c)...)
		}
		return map[string][]byte{SecretCertKey: certPEM, SecretKeyKey: keyPEM}
	}
	tests := []struct {
		name      string
		parent    *pki.CA
		chain     []*x509.Certificate
		anchor    *pki.CA
		loadAt    time.Time
		wantUntil time.Time // zero: refused
		wantMsg   string
	}{
		{name: "anchor expires before the issuer", parent: shortAnchor, anchor: shortAnchor, loadAt: now, wantUntil: shortAnchor.Cert.NotAfter},
		{name: "intermediate expires before the issuer", parent: shortMid, chain: []*x509.Certificate{shortMid.Cert}, anchor: longAnchor, loadAt: now, wantUntil: shortMid.Cert.NotAfter},
		{name: "anchor expired since the issuer was loaded", parent: expiredAnchor, anchor: expiredAnchor, loadAt: now.Add(-2 * time.Hour), wantMsg: `certificate "expired anchor" in the chain of the issuer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := issuerUnder(tt.parent, tt.chain...)
			iss, err := LoadIssuer(secret, pki.CertPEM(tt.anchor.Cert), tt.loadAt)
			if err != nil {
				t.Fatal(err)
			}
			s, m := newTestService(t, fakeTokens{"good": "system:serviceaccount:emojivoto:web"}, staticIssuer{iss})
			resp, err := s.Certify(context.Background(), &identityv1.CertifyRequest{Identity: testID, Token: []byte("good"), CertificateSigningRequest: makeCSR(t, p256(t), []string{testID})})
			if tt.wantUntil.IsZero() {
				if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("err = %v, want Unavailable containing %q", err, tt.wantMsg)
				}
				if got := testutil.ToFloat64(m.failures.WithLabelValues(string(ReasonNoIssuer))); got != 1 {
					t.Errorf("failures{no_issuer} = %v, want 1", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
			if err != nil {
				t.Fatal(err)
			}
			if leaf.NotAfter.After(tt.wantUntil) || leaf.NotAfter.Before(tt.wantUntil.Add(-time.Second)) {
				t.Errorf("leaf NotAfter %s, want %s (the chain's first expiry)", leaf.NotAfter, tt.wantUntil)
			}
			if !resp.GetValidUntil().AsTime().Equal(leaf.NotAfter) {
				t.Errorf("valid_until %s != leaf NotAfter %s", resp.GetValidUntil().AsTime(), leaf.NotAfter)
			}
		})
	}
}

// TestCertifyLeafIgnoresCSRRequests pins what the leaf is whatever the CSR
// asks for: a CSR requesting CA:TRUE, keyCertSign and other extended key
// usages still yields an end-entity leaf with the fixed usages, backdated
// 20 s, with a random serial.
func TestCertifyLeafIgnoresCSRRequests(t *testing.T) {
	p := newTestPKI(t, "a")
	s, _ := newTestService(t, fakeTokens{"good": "system:serviceaccount:emojivoto:web"}, staticIssuer{p.loaded(t)})
	bc, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	if err != nil {
		t.Fatal(err)
	}
	ku, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}) // keyCertSign, cRLSign
	if err != nil {
		t.Fatal(err)
	}
	withCA := func(tmpl *x509.CertificateRequest) {
		tmpl.ExtraExtensions = []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: ku},
		}
	}
	probe, err := x509.ParseCertificateRequest(makeCSR(t, p256(t), []string{testID}, withCA))
	if err != nil || len(probe.Extensions) < 3 {
		t.Fatalf("the CSR does not carry the CA requests: %v %v", err, probe.Extensions)
	}
	serials := map[string]bool{}
	for i := range 20 {
		before := time.Now()
		resp, err := s.Certify(context.Background(), &identityv1.CertifyRequest{Identity: testID, Token: []byte("good"), CertificateSigningRequest: makeCSR(t, p256(t), []string{testID}, withCA)})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
		if err != nil {
			t.Fatal(err)
		}
		if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Fatalf("leaf %d: IsCA %v, key usage %b: the CSR's requests were honoured", i, leaf.IsCA, leaf.KeyUsage)
		}
		if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
			t.Fatalf("leaf %d: extended key usages %v, want serverAuth, clientAuth", i, leaf.ExtKeyUsage)
		}
		if leaf.Subject.CommonName != testID {
			t.Fatalf("leaf %d: CN %q, want the identity", i, leaf.Subject.CommonName)
		}
		if back := before.Sub(leaf.NotBefore); back < 19*time.Second || back > 22*time.Second {
			t.Fatalf("leaf %d: NotBefore %s before the request, want about 20s", i, back)
		}
		if serials[leaf.SerialNumber.String()] {
			t.Fatalf("serial %s issued twice", leaf.SerialNumber)
		}
		serials[leaf.SerialNumber.String()] = true
	}
}
