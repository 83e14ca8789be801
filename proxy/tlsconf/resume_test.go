package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

type staticCerts struct{ c *tls.Certificate }

func (s staticCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.c, nil }
func (s staticCerts) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.c, nil
}

func leafCert(t *testing.T, ca *pki.CA, name string) staticCerts {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.SignLeaf(name, key.Public(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return staticCerts{&tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}}
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
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		a, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		deadline := time.Now().Add(10 * time.Second)
		_ = a.SetDeadline(deadline)
		_ = b.SetDeadline(deadline)
		sc := tls.Server(b, srvCfg)
		cc := tls.Client(a, Client(cliCerts, anchors, serverID, ALPNOpaque, cache))
		errc := make(chan error, 1)
		go func() {
			err := sc.Handshake()
			if err == nil {
				// TLS 1.3 tickets follow the handshake: let the client read them.
				_, err = sc.Write([]byte("x"))
			}
			errc <- err
		}()
		if err := cc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if _, err := cc.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		return cc.ConnectionState(), sc.ConnectionState()
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
