package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/conduit-mesh/conduit/pkg/pki"
	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
)

// Options configure a Manager.
type Options struct {
	// Addr of the identity service, host:port.
	Addr string
	// ServerName is the identity service's identity; empty means plaintext
	// (the caller has checked that Addr is loopback).
	ServerName string
	// Name is this workload's identity.
	Name string
	// TokenFile holds the projected ServiceAccount token; it is re-read on every request.
	TokenFile string
	// Anchors verify the identity service and, later, every peer.
	Anchors *x509.CertPool
	Logger  *slog.Logger
	// RenewAt is the fraction of the lifetime after which to renew (default 0.7).
	RenewAt float64
	// MinBackoff and MaxBackoff bound retry delays (defaults 1s and 1m).
	MinBackoff, MaxBackoff time.Duration
}

// Manager holds the current certificate.
type Manager struct {
	opts  Options
	key   *ecdsa.PrivateKey
	csr   []byte
	cert  atomic.Pointer[tls.Certificate]
	ready chan struct{}
	once  sync.Once
}

// New generates the private key and the CSR.
func New(opts Options) (*Manager, error) {
	if opts.RenewAt <= 0 || opts.RenewAt >= 1 {
		opts.RenewAt = 0.7
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: opts.Name},
		DNSNames: []string{opts.Name},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("identity: create CSR: %w", err)
	}
	return &Manager{opts: opts, key: key, csr: csr, ready: make(chan struct{})}, nil
}

// Name is the workload identity.
func (m *Manager) Name() string { return m.opts.Name }

// Anchors are the trust anchors.
func (m *Manager) Anchors() *x509.CertPool { return m.opts.Anchors }

// Ready is closed once a certificate is available.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// IsReady reports whether a certificate is available.
func (m *Manager) IsReady() bool { return m.cert.Load() != nil }

// Expiry returns when the current certificate expires (its NotAfter), the
// zero time before the first one.
func (m *Manager) Expiry() time.Time {
	if c := m.cert.Load(); c != nil && c.Leaf != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}

// Certificate returns the current certificate, or nil before the first one.
func (m *Manager) Certificate() *tls.Certificate { return m.cert.Load() }

// CertificateChainPEM returns the current leaf certificate followed by its
// intermediates, PEM-encoded, or nil before the first certificate. It never
// includes the private key.
func (m *Manager) CertificateChainPEM() []byte {
	c := m.cert.Load()
	if c == nil {
		return nil
	}
	var out []byte
	for _, der := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

// GetCertificate is a tls.Config.GetCertificate callback.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("identity: no certificate yet")
}

// GetClientCertificate is a tls.Config.GetClientCertificate callback; before
// the first certificate it presents none.
func (m *Manager) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return &tls.Certificate{}, nil
}

// SetCertificate installs a certificate (used by Run and by tests).
func (m *Manager) SetCertificate(leaf *x509.Certificate, chain []*x509.Certificate) {
	c := &tls.Certificate{PrivateKey: m.key, Leaf: leaf}
	c.Certificate = append(c.Certificate, leaf.Raw)
	for _, ic := range chain {
		c.Certificate = append(c.Certificate, ic.Raw)
	}
	m.cert.Store(c)
	m.once.Do(func() { close(m.ready) })
}

// Key is the in-memory private key's public half, for tests.
func (m *Manager) PublicKey() any { return &m.key.PublicKey }

// Run obtains and renews the certificate until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	var creds credentials.TransportCredentials
	if m.opts.ServerName == "" {
		creds = insecure.NewCredentials()
	} else {
		creds = credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13, // as every connection of the mesh (tlsconf)
			ServerName: m.opts.ServerName,
			RootCAs:    m.opts.Anchors,
		})
	}
	cc, err := grpc.NewClient(m.opts.Addr, grpc.WithTransportCredentials(creds), grpc.WithConnectParams(ConnectParams))
	if err != nil {
		return fmt.Errorf("identity: client for %s: %w", m.opts.Addr, err)
	}
	defer cc.Close()
	client := identityv1.NewIdentityClient(cc)
	log := m.opts.Logger
	failures := 0
	var loudAt time.Time // when a failure past the expiry was last logged as an error
	for {
		var wait time.Duration
		leaf, err := m.certify(ctx, client)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			var notAfter time.Time // zero: no certificate yet
			if c := m.cert.Load(); c != nil {
				notAfter = c.Leaf.NotAfter
			}
			now := time.Now()
			wait = m.retryWait(failures, notAfter, now)
			expired := expiredAt(notAfter, now)
			switch {
			case expired && now.Sub(loudAt) >= expiredLogEvery:
				// Past this point peers refuse the certificate: say so
				// louder than a retry, which may go on for long, but
				// not at every retry (ExpiredMaxBackoff apart).
				loudAt = now
				log.Error("certify failed and the certificate has expired: mTLS connections to and from this proxy fail until the identity service answers",
					"err", err, "expired", notAfter, "failures", failures, "in", wait.Round(time.Millisecond).String())
			case expired:
				log.Debug("certify failed; retrying", "err", err, "failures", failures, "in", wait.Round(time.Millisecond).String())
			default:
				log.Warn("certify failed; retrying", "err", err, "in", wait.Round(time.Millisecond).String())
			}
		} else {
			failures, loudAt = 0, time.Time{}
			life := leaf.NotAfter.Sub(leaf.NotBefore)
			wait = time.Until(leaf.NotBefore.Add(time.Duration(float64(life) * m.opts.RenewAt)))
			if wait < m.opts.MinBackoff {
				wait = m.opts.MinBackoff
			}
			log.Info("certified", "identity", m.opts.Name, "expiry", leaf.NotAfter, "renew_in", wait.Round(time.Second).String())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// ExpiredMaxBackoff bounds the wait between retries once the certificate
// has expired: every mTLS connection to and from the proxy fails until
// the next retry succeeds, so the proxy must notice promptly that the
// identity service is back.
const ExpiredMaxBackoff = 5 * time.Second

// expiredLogEvery spaces the errors logged for failures past the expiry;
// the failures between them are logged at debug level.
const expiredLogEvery = time.Minute

// retryWait is the wait before the next certify after failures failed in a
// row, with the current certificate valid until notAfter (zero: none yet).
// It backs off exponentially up to MaxBackoff, but never past a quarter of
// what is left of the certificate's life, so retries come faster as its
// expiry nears, and never more than ExpiredMaxBackoff once it has expired.
func (m *Manager) retryWait(failures int, notAfter, now time.Time) time.Duration {
	hi := m.opts.MaxBackoff
	if expiredAt(notAfter, now) {
		hi = min(hi, ExpiredMaxBackoff)
	}
	wait := Backoff(failures, m.opts.MinBackoff, hi)
	if left := notAfter.Sub(now); !notAfter.IsZero() && left > 0 && left/4 < wait {
		wait = max(left/4, m.opts.MinBackoff)
	}
	return wait
}

// expiredAt reports whether a certificate valid until notAfter (zero: no
// certificate yet) has expired at now.
func expiredAt(notAfter, now time.Time) bool {
	return !notAfter.IsZero() && !now.Before(notAfter)
}

// ConnectParams are the reconnect backoff of the proxy's gRPC clients of
// the control plane (identity and destination). grpc-go's default waits up
// to 2 minutes between attempts after a long outage, which would delay the
// proxy's own retries (MaxBackoff, ExpiredMaxBackoff) once the service is
// back; these wait at most ExpiredMaxBackoff.
var ConnectParams = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  time.Second,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   ExpiredMaxBackoff,
	},
	MinConnectTimeout: 20 * time.Second,
}

func (m *Manager) certify(ctx context.Context, client identityv1.IdentityClient) (*x509.Certificate, error) {
	token, err := os.ReadFile(m.opts.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("identity: read token: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := client.Certify(cctx, &identityv1.CertifyRequest{
		Identity:                  m.opts.Name,
		Token:                     token,
		CertificateSigningRequest: m.csr,
	})
	if err != nil {
		return nil, fmt.Errorf("identity: certify: %w", err)
	}
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil {
		return nil, fmt.Errorf("identity: parse leaf: %w", err)
	}
	var chain []*x509.Certificate
	inter := x509.NewCertPool()
	for _, der := range resp.GetIntermediateCertificates() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("identity: parse intermediate: %w", err)
		}
		chain = append(chain, c)
		inter.AddCert(c)
	}
	if err := Validate(leaf, inter, m.opts.Anchors, m.opts.Name, &m.key.PublicKey); err != nil {
		return nil, err
	}
	m.SetCertificate(leaf, chain)
	return leaf, nil
}

// Validate checks that leaf chains to anchors, names exactly identity (its
// only DNS SAN: x509's own name check also takes a wildcard, or one name
// among several, and peers read the first DNS SAN as the identity), is not a
// CA, serves for both TLS server and client authentication (it is presented
// on both sides of mTLS), and holds pub.
func Validate(leaf *x509.Certificate, inter, anchors *x509.CertPool, identity string, pub *ecdsa.PublicKey) error {
	if len(leaf.DNSNames) != 1 || !strings.EqualFold(leaf.DNSNames[0], identity) {
		return fmt.Errorf("identity: issued certificate names %q, want exactly %q", leaf.DNSNames, identity)
	}
	if leaf.IsCA {
		return errors.New("identity: issued certificate is a CA certificate")
	}
	// x509 accepts a chain that allows any one of KeyUsages: check each.
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{
			Roots: anchors, Intermediates: inter, DNSName: identity,
			KeyUsages: []x509.ExtKeyUsage{usage},
		}); err != nil {
			return fmt.Errorf("identity: issued certificate does not verify: %w", err)
		}
	}
	lp, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !lp.Equal(pub) {
		return errors.New("identity: issued certificate is not for our key")
	}
	return nil
}

// Backoff is an exponential delay with jitter for the n-th failure (n >= 1).
func Backoff(n int, lo, hi time.Duration) time.Duration {
	d := float64(lo) * math.Pow(2, float64(min(n-1, 30)))
	if d > float64(hi) {
		d = float64(hi)
	}
	// Full jitter in [d/2, d].
	return time.Duration(d/2 + mrand.Float64()*d/2)
}
