package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Reason labels a refused or failed Certify request in metrics and logs.
type Reason string

// Every reason Certify refuses a request for, with its gRPC code in codeOf.
const (
	ReasonBadIdentity       Reason = "bad_identity"
	ReasonCSRMalformed      Reason = "csr_malformed"
	ReasonCSRBadSignature   Reason = "csr_bad_signature"
	ReasonCSRUnsupportedKey Reason = "csr_unsupported_key"
	ReasonCSRNames          Reason = "csr_names"
	ReasonNotServiceAccount Reason = "not_service_account"
	ReasonIdentityMismatch  Reason = "identity_mismatch"
	ReasonNoIssuer          Reason = "no_issuer"
	ReasonSignFailed        Reason = "sign_failed"
)

var allReasons = []Reason{
	ReasonBadIdentity, ReasonCSRMalformed, ReasonCSRBadSignature, ReasonCSRUnsupportedKey, ReasonCSRNames,
	Reason(TokenMalformed), Reason(TokenExpired), Reason(TokenWrongAudience), Reason(TokenAccountNotFound),
	Reason(TokenInvalid), Reason(TokenReviewFailed),
	ReasonNotServiceAccount, ReasonIdentityMismatch, ReasonNoIssuer, ReasonSignFailed,
}

func codeOf(r Reason) codes.Code {
	switch r {
	case ReasonBadIdentity, ReasonCSRMalformed, ReasonCSRBadSignature, ReasonCSRUnsupportedKey, ReasonCSRNames, Reason(TokenMalformed):
		return codes.InvalidArgument
	case Reason(TokenExpired), Reason(TokenWrongAudience), Reason(TokenAccountNotFound), Reason(TokenInvalid):
		return codes.Unauthenticated
	case ReasonNotServiceAccount, ReasonIdentityMismatch:
		return codes.PermissionDenied
	case ReasonNoIssuer, Reason(TokenReviewFailed):
		return codes.Unavailable
	}
	return codes.Internal
}

// tokenReviewTimeout bounds one token validation (a TokenReview round trip).
const tokenReviewTimeout = 10 * time.Second

// Config is what the Service needs besides its dependencies.
type Config struct {
	// ControlPlaneNamespace and TrustDomain end every identity.
	ControlPlaneNamespace string
	TrustDomain           string
	// CertLifetime is the validity of a leaf (capped at the issuer's expiry).
	CertLifetime time.Duration
}

// Service implements conduit.identity.v1.Identity.
type Service struct {
	identityv1.UnimplementedIdentityServer

	cfg     Config
	tokens  TokenValidator
	issuers IssuerSource
	metrics *Metrics
	log     *slog.Logger
	limiter *logLimiter
}

// NewService returns the Certify service. metrics may come from NewMetrics(nil).
func NewService(cfg Config, tokens TokenValidator, issuers IssuerSource, metrics *Metrics, log *slog.Logger) (*Service, error) {
	if cfg.ControlPlaneNamespace == "" || cfg.TrustDomain == "" {
		return nil, errors.New("identity: the control-plane namespace and the trust domain must be set")
	}
	if cfg.CertLifetime < time.Minute {
		return nil, fmt.Errorf("identity: certificate lifetime %s is too short (minimum 1m)", cfg.CertLifetime)
	}
	return &Service{cfg: cfg, tokens: tokens, issuers: issuers, metrics: metrics, log: log, limiter: newLogLimiter(time.Minute)}, nil
}

// refusal is a Certify failure with its reason. msg goes to the client and
// the log; cause, when set, only to the log (it may name internal addresses
// or RBAC subjects, and it is what an operator needs to fix the failure).
type refusal struct {
	reason Reason
	msg    string
	cause  error
}

func refuse(r Reason, format string, args ...any) *refusal {
	return &refusal{reason: r, msg: fmt.Sprintf(format, args...)}
}

// Certify validates the caller's token and CSR and signs a leaf certificate.
func (s *Service) Certify(ctx context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	start := time.Now()
	defer func() { s.metrics.duration.Observe(time.Since(start).Seconds()) }()
	resp, r := s.certify(ctx, req)
	if r != nil {
		s.metrics.failures.WithLabelValues(string(r.reason)).Inc()
		args := []any{"reason", r.reason, "identity", req.GetIdentity(), "error", r.msg}
		if r.cause != nil {
			args = append(args, "cause", r.cause.Error())
		}
		s.limiter.log(s.log, r.reason, "certify refused", args...)
		return nil, status.Error(codeOf(r.reason), "identity: "+r.msg)
	}
	s.metrics.issued.Inc()
	s.log.Debug("certificate issued", "identity", req.GetIdentity(), "valid_until", resp.GetValidUntil().AsTime())
	return resp, nil
}

func (s *Service) certify(ctx context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, *refusal) {
	want := req.GetIdentity()
	if r := s.checkIdentityShape(want); r != nil {
		return nil, r
	}
	csr, r := checkCSR(req.GetCertificateSigningRequest(), want)
	if r != nil {
		return nil, r
	}
	vctx, cancel := context.WithTimeout(ctx, tokenReviewTimeout)
	defer cancel()
	username, err := s.tokens.Validate(vctx, string(req.GetToken()))
	if err != nil {
		var te *TokenError
		if errors.As(err, &te) {
			r := refuse(Reason(te.Kind), "token refused: %s", te.Detail)
			r.cause = te.Err
			return nil, r
		}
		return nil, refuse(Reason(TokenReviewFailed), "token validation failed: %v", err)
	}
	sa, err := ParseServiceAccountUsername(username)
	if err != nil {
		return nil, refuse(ReasonNotServiceAccount, "the token authenticates %q, which is not a ServiceAccount", username)
	}
	got := Name(sa.Name, sa.Namespace, s.cfg.ControlPlaneNamespace, s.cfg.TrustDomain)
	if got != want {
		return nil, refuse(ReasonIdentityMismatch, "the token is for ServiceAccount %s/%s, whose identity is %q, not the requested %q", sa.Namespace, sa.Name, got, want)
	}
	iss := s.issuers.Current()
	if iss == nil {
		return nil, refuse(ReasonNoIssuer, "no valid issuer is loaded (check the conduit-identity-issuer Secret and its events)")
	}
	now := time.Now()
	if now.After(iss.CA.Cert.NotAfter) {
		return nil, refuse(ReasonNoIssuer, "the issuer %s has expired: replace the conduit-identity-issuer Secret", iss)
	}
	first := iss.FirstToExpire()
	if now.After(first.NotAfter) {
		return nil, refuse(ReasonNoIssuer, "certificate %q in the chain of the issuer %s expired at %s: replace the conduit-identity-issuer Secret (and the trust anchors if it is one)",
			first.Subject.CommonName, iss, first.NotAfter.UTC().Format(time.RFC3339))
	}
	leaf, err := iss.CA.SignLeafUntil(want, csr.PublicKey, s.cfg.CertLifetime, first.NotAfter)
	if err != nil {
		return nil, refuse(ReasonSignFailed, "sign the certificate: %v", err)
	}
	return &identityv1.CertifyResponse{
		LeafCertificate:          leaf.Raw,
		IntermediateCertificates: slices.Clone(iss.Intermediates),
		ValidUntil:               timestamppb.New(leaf.NotAfter),
	}, nil
}

// checkIdentityShape refuses an identity outside this control plane and trust domain.
func (s *Service) checkIdentityShape(id string) *refusal {
	if id == "" {
		return refuse(ReasonBadIdentity, "the request names no identity")
	}
	suffix := ".serviceaccount.identity." + s.cfg.ControlPlaneNamespace + "." + s.cfg.TrustDomain
	head, ok := strings.CutSuffix(id, suffix)
	if !ok {
		return refuse(ReasonBadIdentity, "identity %q does not end in %q (want <sa>.<ns>%s)", id, suffix, suffix)
	}
	if i := strings.LastIndexByte(head, '.'); i <= 0 || i == len(head)-1 {
		return refuse(ReasonBadIdentity, "identity %q is not <sa>.<ns>%s", id, suffix)
	}
	return nil
}

// checkCSR parses a DER PKCS#10 request and checks its signature, its key
// (ECDSA P-256) and its names (exactly one DNS SAN, the identity, and no
// other SAN of any kind).
func checkCSR(der []byte, id string) (*x509.CertificateRequest, *refusal) {
	if len(der) == 0 {
		return nil, refuse(ReasonCSRMalformed, "the request has no certificate signing request")
	}
	if bytes.HasPrefix(bytes.TrimLeft(der, " \t\r\n"), []byte("-----BEGIN")) {
		return nil, refuse(ReasonCSRMalformed, "the certificate signing request is PEM-encoded; send the DER bytes (the content of the CERTIFICATE REQUEST block)")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, refuse(ReasonCSRMalformed, "the certificate signing request is not DER PKCS#10: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, refuse(ReasonCSRBadSignature, "the certificate signing request's signature does not verify: %v", err)
	}
	k, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, refuse(ReasonCSRUnsupportedKey, "the certificate signing request's key is %s; only ECDSA P-256 is accepted", keyDesc(csr.PublicKey))
	}
	if len(csr.DNSNames) != 1 || csr.DNSNames[0] != id {
		return nil, refuse(ReasonCSRNames, "the certificate signing request's DNS SANs are %q; they must be exactly [%q]", csr.DNSNames, id)
	}
	if len(csr.IPAddresses)+len(csr.URIs)+len(csr.EmailAddresses) > 0 {
		return nil, refuse(ReasonCSRNames, "the certificate signing request has IP, URI or e-mail SANs; only the DNS SAN %q is allowed", id)
	}
	return csr, nil
}

func keyDesc(k any) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case nil:
		return "missing"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", k), "*")
}

// logLimiter logs a cause the first time it happens, then at most once per
// interval with the number of occurrences it held back: a misbehaving client
// retrying in a loop never floods the log.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	state map[Reason]*limitState
	now   func() time.Time
}

type limitState struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, state: map[Reason]*limitState{}, now: time.Now}
}

// allow reports whether to log r now and how many occurrences were held back since the last log.
func (l *logLimiter) allow(r Reason) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st, ok := l.state[r]
	if !ok {
		l.state[r] = &limitState{last: now}
		return true, 0
	}
	if now.Sub(st.last) < l.every {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}

func (l *logLimiter) log(log *slog.Logger, r Reason, msg string, args ...any) {
	ok, held := l.allow(r)
	if !ok {
		return
	}
	if held > 0 {
		args = append(args, "suppressed_since_last_log", held)
	}
	log.Warn(msg, args...)
}
