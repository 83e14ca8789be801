package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CA is a certificate together with its private key: a trust anchor or an issuer.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain holds the certificates between Cert and its root, Cert's issuer first (empty for a root).
	Chain []*x509.Certificate
}

// clockSkew back-dates NotBefore so that a peer whose clock is slightly behind accepts a fresh certificate.
const clockSkew = 20 * time.Second

// NewKey returns a new ECDSA P-256 private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	return k, nil
}

func serial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return s, nil
}

// NewRoot creates a self-signed trust anchor valid for validity.
func NewRoot(commonName string, validity time.Duration) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create root %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse root: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// NewIssuer creates an intermediate CA signed by ca, valid for validity
// (capped at ca's own expiry).
func (ca *CA) NewIssuer(commonName string, validity time.Duration) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: create issuer %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse issuer: %w", err)
	}
	return &CA{Cert: cert, Key: key, Chain: append([]*x509.Certificate{ca.Cert}, ca.Chain...)}, nil
}

// SignLeaf signs a workload certificate for pub whose only DNS SAN is name,
// usable for both TLS server and client authentication. validity is capped at
// the issuer's expiry.
func (ca *CA) SignLeaf(name string, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error) {
	return ca.SignLeafUntil(name, pub, validity, ca.Cert.NotAfter)
}

// SignLeafUntil is SignLeaf with NotAfter also capped at limit (the earliest
// expiry in the issuer's chain: a leaf is of no use once its chain expired).
func (ca *CA) SignLeafUntil(name string, pub crypto.PublicKey, validity time.Duration, limit time.Time) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if notAfter.After(limit) {
		notAfter = limit
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("pki: sign leaf %q: the issuer or its chain expired at %s", name, notAfter.UTC().Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign leaf %q: %w", name, err)
	}
	return x509.ParseCertificate(der)
}

// CertPEM encodes c as PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// KeyPEM encodes an ECDSA key as a PKCS#8 PEM block.
func KeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertificates decodes every CERTIFICATE block of a PEM bundle. It fails
// when the bundle holds no certificate or a block does not parse.
func ParseCertificates(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := pemBytes
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("pki: no PEM CERTIFICATE block found")
	}
	return out, nil
}

// ParseKey decodes a PEM private key (PKCS#8, SEC 1 "EC PRIVATE KEY" or PKCS#1).
// An "EC PARAMETERS" block before the key (what `openssl ecparam -genkey`
// writes) is skipped.
func ParseKey(pemBytes []byte) (crypto.Signer, error) {
	b, rest := pem.Decode(pemBytes)
	for b != nil && b.Type == "EC PARAMETERS" {
		b, rest = pem.Decode(rest)
	}
	if b == nil {
		return nil, errors.New("pki: no PEM private key block found in key")
	}
	var k any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("pki: unsupported key PEM type %q", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: parse %s: %w", b.Type, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: key of type %T cannot sign", k)
	}
	return s, nil
}

// LoadCA builds a CA from PEM certificate(s) (the CA first, then its chain) and its PEM key,
// and checks that the key matches the certificate and that the certificate may sign.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	c := certs[0]
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("pki: certificate %q is not a CA (needs CA:TRUE and keyCertSign)", c.Subject.CommonName)
	}
	if !publicKeysEqual(c.PublicKey, key.Public()) {
		return nil, fmt.Errorf("pki: key does not match certificate %q", c.Subject.CommonName)
	}
	return &CA{Cert: c, Key: key, Chain: certs[1:]}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// VerifyIssuer checks that issuer chains to one of roots at time now, and
// that no certificate of that chain (the issuer, its intermediates, the root)
// restricts its extended key usages so that the leaves it signs would be
// refused (CheckExtKeyUsage).
func VerifyIssuer(issuer *CA, roots []*x509.Certificate, now time.Time) error {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range issuer.Chain {
		inter.AddCert(c)
	}
	chains, err := issuer.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("pki: issuer %q does not chain to the trust anchors: %w", issuer.Cert.Subject.CommonName, err)
	}
	if _, err := MeshChain(chains); err != nil {
		return fmt.Errorf("pki: issuer %q: %w", issuer.Cert.Subject.CommonName, err)
	}
	return nil
}

// ErrExtKeyUsage is wrapped by the errors of CheckExtKeyUsage: a CA
// certificate whose extended key usages leave out what workload certificates
// are used for.
var ErrExtKeyUsage = errors.New("extended key usages exclude mesh TLS")

// meshExtKeyUsages are what every workload certificate is used for (SignLeaf
// sets both): a peer verifies a server's certificate for serverAuth and a
// client's for clientAuth.
var meshExtKeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// CheckExtKeyUsage checks that the CA certificate c (a trust anchor, an
// intermediate, an issuer) does not restrict the extended key usages of the
// certificates under it below what workload certificates need. Go's x509
// verification, the proxies', nests them: a usage that a CA of the chain
// does not list is refused to every certificate below it, whatever the leaf
// says. A CA without the extension, or with anyExtendedKeyUsage, restricts
// nothing; otherwise it must list serverAuth and clientAuth (an extension
// holding only usages Go does not know refuses both).
func CheckExtKeyUsage(c *x509.Certificate) error {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return nil
	}
	if slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil
	}
	var missing []string
	for _, u := range meshExtKeyUsages {
		if !slices.Contains(c.ExtKeyUsage, u) {
			missing = append(missing, extKeyUsageName(u))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	has := make([]string, 0, len(c.ExtKeyUsage)+len(c.UnknownExtKeyUsage))
	for _, u := range c.ExtKeyUsage {
		has = append(has, extKeyUsageName(u))
	}
	for _, oid := range c.UnknownExtKeyUsage {
		has = append(has, oid.String())
	}
	return fmt.Errorf("pki: certificate %s: %w: it lists only %s, without %s, so peers would refuse every workload certificate under it; reissue it with serverAuth and clientAuth, or without the extended key usage extension",
		certName(c), ErrExtKeyUsage, strings.Join(has, ", "), strings.Join(missing, " and "))
}

// MeshChain returns the first of chains (each a leaf or CA first, its root
// last, as x509.Certificate.Verify returns them) whose every certificate
// passes CheckExtKeyUsage, or else the error of the first chain.
func MeshChain(chains [][]*x509.Certificate) ([]*x509.Certificate, error) {
	var first error
	for _, chain := range chains {
		var err error
		for _, c := range chain {
			if err = CheckExtKeyUsage(c); err != nil {
				break
			}
		}
		if err == nil {
			return chain, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return nil, errors.New("pki: no certificate chain")
	}
	return nil, first
}

// certName names a certificate in messages: its common name, else its subject.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return strconv.Quote(c.Subject.CommonName)
	}
	return strconv.Quote(c.Subject.String())
}

// extKeyUsageName is the name RFC 5280 gives an extended key usage (as
// OpenSSL prints it).
func extKeyUsageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageAny:
		return "anyExtendedKeyUsage"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageCodeSigning:
		return "codeSigning"
	case x509.ExtKeyUsageEmailProtection:
		return "emailProtection"
	case x509.ExtKeyUsageIPSECEndSystem:
		return "ipsecEndSystem"
	case x509.ExtKeyUsageIPSECTunnel:
		return "ipsecTunnel"
	case x509.ExtKeyUsageIPSECUser:
		return "ipsecUser"
	case x509.ExtKeyUsageTimeStamping:
		return "timeStamping"
	case x509.ExtKeyUsageOCSPSigning:
		return "OCSPSigning"
	case x509.ExtKeyUsageMicrosoftServerGatedCrypto:
		return "msSGC"
	case x509.ExtKeyUsageNetscapeServerGatedCrypto:
		return "nsSGC"
	case x509.ExtKeyUsageMicrosoftCommercialCodeSigning:
		return "msCodeCom"
	case x509.ExtKeyUsageMicrosoftKernelCodeSigning:
		return "msKernelCodeSigning"
	}
	return fmt.Sprintf("extended key usage %d", int(u))
}

// CheckDNSName checks a DNS-like name as the mesh uses them (an identity, a
// server name, a trust or cluster domain): dot-separated labels of 1-63
// letters, digits and '-', not at either end of a label, 253 characters at
// most. The proxy refuses at start what fails it, so the injector checks
// the names it hands the proxy with it too.
func CheckDNSName(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("%d characters, more than 253", len(s))
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("label %q must be 1-63 characters", label)
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			ok := ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch >= 'A' && ch <= 'Z'
			if !ok {
				return fmt.Errorf("label %q has character %q", label, ch)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
	}
	return nil
}
