package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/proxy/internal/tlstest"
)

type staticCerts struct{ c *tls.Certificate }

func (s staticCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.c, nil }
func (s staticCerts) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.c, nil
}

// leafCert is a certificate for name, valid for an hour (or until ca
// expires).
func leafCert(t *testing.T, ca *pki.CA, name string) staticCerts {
	t.Helper()
	return leafCertFor(t, ca, name, time.Hour)
}

func leafCertFor(t *testing.T, ca *pki.CA, name string, validity time.Duration) staticCerts {
	t.Helper()
	c := tlstest.Leaf(t, ca, name, validity)
	return staticCerts{&c}
}

// Connections between proxies resume TLS sessions (no certificate signature
// or chain verification on reconnects), and a resumed connection still
// carries the client's verified identity, which inbound turns into
// conduit-client-id and the metrics' client_id.
func TestSessionResumptionKeepsPeerID(t *testing.T) {
	root, err := pki.NewRoot("root.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	anchors := x509.NewCertPool()
	anchors.AddCert(root.Cert)
	const serverID, clientID = "server.test", "client.test"
	srvCfg := Server(leafCert(t, root, serverID), anchors)
	cliCerts := leafCert(t, root, clientID)
	cache := tls.NewLRUClientSessionCache(8)

	connect := func() (client, server tls.ConnectionState) {
		t.Helper()
		c, s, cerr, serr := handshake(t, srvCfg, Client(cliCerts, anchors, serverID, ALPNOpaque, cache))
		if cerr != nil || serr != nil {
			t.Fatalf("client %v, server %v", cerr, serr)
		}
		return c, s
	}
	c1, s1 := connect()
	if c1.DidResume || PeerID(&s1) != clientID {
		t.Fatalf("first connection: resumed %v, peer %q", c1.DidResume, PeerID(&s1))
	}
	c2, s2 := connect()
	if !c2.DidResume || !s2.DidResume {
		t.Fatalf("second connection did not resume (client %v, server %v)", c2.DidResume, s2.DidResume)
	}
	if got := PeerID(&s2); got != clientID {
		t.Errorf("resumed connection: peer %q, want %q", got, clientID)
	}
	if got := PeerID(&c2); got != serverID {
		t.Errorf("resumed connection: server %q, want %q", got, serverID)
	}
}
