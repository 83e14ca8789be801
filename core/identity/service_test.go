package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

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
