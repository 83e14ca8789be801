package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/conduit-mesh/conduit/pkg/pki"
	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
	"github.com/conduit-mesh/conduit/proxy/internal/logtest"
)

type fakeCA struct {
	identityv1.UnimplementedIdentityServer
	issuer   *pki.CA
	validity time.Duration
	calls    atomic.Int32
	failures int32 // the first n calls fail
	name     string
	// From call badFrom on (when > 0), the certificate names badName instead.
	badFrom int32
	badName string
	// From call failFrom on (when > 0), every call fails.
	failFrom int32
}

func (f *fakeCA) Certify(_ context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	n := f.calls.Add(1)
	if n <= f.failures || (f.failFrom > 0 && n >= f.failFrom) {
		return nil, status.Error(codes.Unavailable, "not yet")
	}
	if string(req.GetToken()) != "tok" {
		return nil, status.Error(codes.Unauthenticated, "token")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCertificateSigningRequest())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	name := req.GetIdentity()
	if f.name != "" {
		name = f.name
	}
	if f.badFrom > 0 && n >= f.badFrom {
		name = f.badName
	}
	leaf, err := f.issuer.SignLeaf(name, csr.PublicKey, f.validity)
	if err != nil {
		return nil, err
	}
	return &identityv1.CertifyResponse{LeafCertificate: leaf.Raw, IntermediateCertificates: [][]byte{f.issuer.Cert.Raw}}, nil
}

func setup(t *testing.T, ca *fakeCA) (*Manager, context.CancelFunc) {
	t.Helper()
	return setupLog(t, ca, nil)
}

func setupLog(t *testing.T, ca *fakeCA, log *slog.Logger) (*Manager, context.CancelFunc) {
	t.Helper()
	root, err := pki.NewRoot("root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ca.issuer, err = root.NewIssuer("issuer", time.Hour); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	identityv1.RegisterIdentityServer(s, ca)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	// Plaintext (empty server name) on loopback, as for the identity pod's own proxy.
	m, err := New(Options{Addr: l.Addr().String(), Name: "web.ns.serviceaccount.identity.conduit.cluster.local",
		TokenFile: tok, Anchors: pool, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = m.Run(ctx) }()
	t.Cleanup(cancel)
	return m, cancel
}

func TestCertifyRetriesThenRenews(t *testing.T) {
	ca := &fakeCA{validity: 3 * time.Second, failures: 2}
	m, _ := setup(t, ca)
	if m.IsReady() {
		t.Fatal("ready before any certificate")
	}
	select {
	case <-m.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no certificate")
	}
	first := m.Certificate().Leaf
	if first.DNSNames[0] != m.Name() {
		t.Errorf("SAN %v", first.DNSNames)
	}
	// The leaf is back-dated 20 s by pki, so 70 % of its life has passed at once: renewal follows within MinBackoff.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && m.Certificate().Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if m.Certificate().Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("certificate not renewed")
	}
	if ca.calls.Load() < 4 {
		t.Errorf("calls %d, want 2 failures + issue + renewal", ca.calls.Load())
	}
}

func TestRejectsWrongIdentity(t *testing.T) {
	ca := &fakeCA{validity: time.Hour, name: "someone.else.serviceaccount.identity.conduit.cluster.local"}
	m, _ := setup(t, ca)
	time.Sleep(300 * time.Millisecond)
	if m.IsReady() {
		t.Error("accepted a certificate for another identity")
	}
	if ca.calls.Load() < 2 {
		t.Errorf("did not retry: %d calls", ca.calls.Load())
	}
}

func TestBackoff(t *testing.T) {
	for n := 1; n < 40; n++ {
		d := Backoff(n, time.Second, time.Minute)
		if d < time.Second/2 || d > time.Minute {
			t.Fatalf("Backoff(%d) = %v", n, d)
		}
	}
	if d := Backoff(3, time.Second, time.Minute); d < 2*time.Second || d > 4*time.Second {
		t.Errorf("Backoff(3) = %v, want 2-4s", d)
	}
}

// TestRetryWait: certify retries back off to MaxBackoff, come faster as the
// certificate's expiry nears, and come within ExpiredMaxBackoff once it has
// expired, however many failed before.
func TestRetryWait(t *testing.T) {
	m := &Manager{opts: Options{MinBackoff: time.Second, MaxBackoff: time.Minute}}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		failures int
		notAfter time.Time
		lo, hi   time.Duration
	}{
		{"no certificate yet, first failure", 1, time.Time{}, time.Second / 2, time.Second},
		{"no certificate yet, many failures", 20, time.Time{}, 30 * time.Second, time.Minute},
		{"valid for an hour", 20, now.Add(time.Hour), 30 * time.Second, time.Minute},
		{"valid for 40 s: a quarter of it", 20, now.Add(40 * time.Second), 10 * time.Second, 10 * time.Second},
		{"valid for 2 s: MinBackoff", 20, now.Add(2 * time.Second), time.Second, time.Second},
		{"expires now", 20, now, ExpiredMaxBackoff / 2, ExpiredMaxBackoff},
		{"expired an hour ago", 30, now.Add(-time.Hour), ExpiredMaxBackoff / 2, ExpiredMaxBackoff},
		{"expired, first failure", 1, now.Add(-time.Hour), time.Second / 2, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 { // Backoff's jitter
				if d := m.retryWait(tc.failures, tc.notAfter, now); d < tc.lo || d > tc.hi {
					t.Fatalf("retryWait(%d, %v) = %v, want %v-%v", tc.failures, tc.notAfter.Sub(now), d, tc.lo, tc.hi)
				}
			}
		})
	}
}

func TestCertificateChainPEM(t *testing.T) {
	ca := &fakeCA{validity: time.Hour, failures: 1}
	m, _ := setup(t, ca)
	select {
	case <-m.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no certificate")
	}
	out := m.CertificateChainPEM()
	if strings.Contains(string(out), "PRIVATE") {
		t.Fatal("the private key is in the chain")
	}
	var ders [][]byte
	for rest := out; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("block %q", b.Type)
		}
		ders = append(ders, b.Bytes)
	}
	cur := m.Certificate()
	if len(ders) != 2 || len(cur.Certificate) != 2 || !bytes.Equal(ders[0], cur.Leaf.Raw) || !bytes.Equal(ders[1], ca.issuer.Cert.Raw) {
		t.Errorf("chain of %d certificates is not leaf + issuer", len(ders))
	}
}

func TestCertificateChainPEMBeforeFirst(t *testing.T) {
	m, err := New(Options{Name: "web.ns.serviceaccount.identity.conduit.cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.CertificateChainPEM(); got != nil {
		t.Errorf("chain before the first certificate: %q", got)
	}
}

// TestRefusedRenewalKeepsCertificate: a renewal whose certificate does not
// name exactly this identity (here a wildcard, which x509's own name check
// takes) is refused; the current certificate stays and renewal goes on.
func TestRefusedRenewalKeepsCertificate(t *testing.T) {
	ca := &fakeCA{validity: 3 * time.Second, badFrom: 2, badName: "*.ns.serviceaccount.identity.conduit.cluster.local"}
	m, _ := setup(t, ca)
	select {
	case <-m.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no certificate")
	}
	first := m.Certificate().Leaf
	// The leaf is back-dated, so renewal is due at once; wait for a few refused ones.
	deadline := time.Now().Add(5 * time.Second)
	for ca.calls.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ca.calls.Load() < 4 {
		t.Fatalf("%d calls: renewal stopped", ca.calls.Load())
	}
	if got := m.Certificate().Leaf; got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("took a certificate for %v", got.DNSNames)
	}
}

// TestExpiredCertificateLogged: while the identity service fails, retries
// are warnings; once the certificate has expired (peers refuse it from then
// on) they are errors that say so.
func TestExpiredCertificateLogged(t *testing.T) {
	var out logtest.Buffer
	// Two seconds: a certificate's NotAfter is whole seconds, so one second
	// of validity left anywhere from 0 to 1 s to see the warnings in (5 ms
	// once: a flake).
	ca := &fakeCA{validity: 2 * time.Second, failFrom: 2}
	m, _ := setupLog(t, ca, slog.New(slog.NewTextHandler(&out, nil)))
	select {
	case <-m.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no certificate")
	}
	expiry := m.Certificate().Leaf.NotAfter
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(out.String(), "level=ERROR") {
		time.Sleep(20 * time.Millisecond)
	}
	log := out.String()
	if !strings.Contains(log, "level=WARN msg=\"certify failed; retrying\"") {
		t.Errorf("no warning while the certificate was valid:\n%s", log)
	}
	i := strings.Index(log, "level=ERROR")
	if i < 0 || !strings.Contains(log[i:], "the certificate has expired") {
		t.Fatalf("no error once the certificate expired at %s:\n%s", expiry, log)
	}
	if time.Now().Before(expiry) {
		t.Errorf("an error before the certificate expired at %s", expiry)
	}
	// The retries go on (MinBackoff 20 ms apart), logged as errors once a
	// minute only: one error here.
	calls := ca.calls.Load()
	time.Sleep(300 * time.Millisecond)
	if n := ca.calls.Load() - calls; n < 3 {
		t.Fatalf("%d retries in 300 ms after the expiry", n)
	}
	if n := strings.Count(out.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d errors logged after the expiry, want 1:\n%s", n, out.String())
	}
}

// TestIdentityServiceTLS13: the proxy reaches the identity service over TLS
// 1.3 only, as every connection of the mesh; a server that offers at most
// TLS 1.2 gets no request (and the proxy no certificate).
func TestIdentityServiceTLS13(t *testing.T) {
	for _, tc := range []struct {
		name  string
		max   uint16
		ready bool
	}{
		{"TLS 1.3", tls.VersionTLS13, true},
		{"TLS 1.2 at most", tls.VersionTLS12, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, err := pki.NewRoot("root", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			ca := &fakeCA{validity: time.Hour}
			if ca.issuer, err = root.NewIssuer("issuer", time.Hour); err != nil {
				t.Fatal(err)
			}
			const server = "conduit-identity.conduit.serviceaccount.identity.conduit.cluster.local"
			key, err := pki.NewKey()
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := ca.issuer.SignLeaf(server, key.Public(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			cert := tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.issuer.Cert.Raw}, PrivateKey: key}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tc.max})))
			identityv1.RegisterIdentityServer(s, ca)
			go func() { _ = s.Serve(l) }()
			t.Cleanup(s.Stop)
			tok := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(tok, []byte("tok"), 0o600); err != nil {
				t.Fatal(err)
			}
			pool := x509.NewCertPool()
			pool.AddCert(root.Cert)
			m, err := New(Options{Addr: l.Addr().String(), ServerName: server, Name: "web.ns.serviceaccount.identity.conduit.cluster.local",
				TokenFile: tok, Anchors: pool, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = m.Run(ctx) }()
			select {
			case <-m.Ready():
				if !tc.ready {
					t.Fatal("certified over TLS 1.2")
				}
			case <-time.After(time.Second):
				if tc.ready {
					t.Fatal("no certificate over TLS 1.3")
				}
				if n := ca.calls.Load(); n != 0 {
					t.Errorf("%d requests reached the identity service over TLS 1.2", n)
				}
			}
		})
	}
}

// TestExpiry: Expiry is the zero time before the first certificate, then
// the current certificate's NotAfter, which stays (in the past) while the
// identity service cannot renew an expired one.
func TestExpiry(t *testing.T) {
	ca := &fakeCA{validity: time.Second, failFrom: 2}
	m, _ := setup(t, ca)
	select {
	case <-m.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no certificate")
	}
	exp := m.Expiry()
	if want := m.Certificate().Leaf.NotAfter; !exp.Equal(want) || exp.IsZero() {
		t.Fatalf("Expiry() = %s, want the leaf's NotAfter %s", exp, want)
	}
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	if got := m.Expiry(); !got.Equal(exp) || !time.Now().After(got) {
		t.Errorf("after a failed renewal, Expiry() = %s, want the expired %s", got, exp)
	}
	before, err := New(Options{Name: "web.ns.serviceaccount.identity.conduit.cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	if got := before.Expiry(); !got.IsZero() {
		t.Errorf("Expiry() before the first certificate = %s, want the zero time", got)
	}
}
