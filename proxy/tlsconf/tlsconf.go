package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
)

// ALPN protocol names.
const (
	ALPNH2     = "h2"
	ALPNHTTP1  = "http/1.1"
	ALPNOpaque = "conduit.opaque"
)

// Certs provides the local certificate; *identity.Manager implements it.
type Certs interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// Server is the inbound mTLS configuration: the client certificate is
// optional (a client without one is served as unauthenticated TLS).
func Server(certs Certs, anchors *x509.CertPool) *tls.Config {
	var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	if certs != nil {
		getCert = certs.GetCertificate
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: getCert,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      anchors,
		NextProtos:     []string{ALPNH2, ALPNOpaque, ALPNHTTP1},
	}
}

// Client is the configuration to reach the peer whose identity is serverName,
// negotiating alpn.
func Client(certs Certs, anchors *x509.CertPool, serverName, alpn string, cache tls.ClientSessionCache) *tls.Config {
	var getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	if certs != nil {
		getCert = certs.GetClientCertificate
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		ServerName:           serverName,
		RootCAs:              anchors,
		GetClientCertificate: getCert,
		NextProtos:           []string{alpn},
		ClientSessionCache:   cache,
	}
}

// PeerID returns the verified identity (the only DNS SAN) of the peer, or "".
func PeerID(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return ""
	}
	if names := cs.PeerCertificates[0].DNSNames; len(names) > 0 {
		return names[0]
	}
	return ""
}
