package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

// rotating serves whatever certificate it holds now.
type rotating struct {
	c atomic.Pointer[tls.Certificate]
}

func (r *rotating) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.c.Load(), nil
}
func (r *rotating) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.c.Load(), nil
}

// handshake runs both sides of one TLS handshake over loopback, then sends
// one byte from the server to the client.
func handshake(t *testing.T, srv, cli *tls.Config) (client, server tls.ConnectionState, cerr, serr error) {
	t.Helper()
	// TCP, not net.Pipe: in TLS 1.3 the client is done before the server
	// has checked its certificate, and the server's alert must not block.
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
	deadline := time.Now().Add(5 * time.Second)
	_ = a.SetDeadline(deadline)
	_ = b.SetDeadline(deadline)
	sc, cc := tls.Server(b, srv), tls.Client(a, cli)
	done := make(chan struct{})
	go func() {
		defer close(done)
		serr = sc.Handshake()
		if serr == nil {
			// TLS 1.3 session tickets follow the handshake: a byte
			// written after them lets the client read them.
			_, serr = sc.Write([]byte("x"))
		}
		if serr != nil {
			_ = b.Close()
		}
	}()
	// The client's handshake is done before the server has checked the
	// client's certificate: the read learns whether it was accepted.
	cerr = cc.Handshake()
	if cerr == nil {
		_, cerr = cc.Read(make([]byte, 1))
	}
	if cerr != nil {
		_ = a.Close()
	}
	<-done
	return cc.ConnectionState(), sc.ConnectionState(), cerr, serr
}

// TestVerification: the server verifies a client certificate against the
// anchors (and takes a client without one as unauthenticated), the client
// verifies the server's identity, only TLS 1.3 is spoken, and a rotated
// certificate is presented on the next connection.
func TestVerification(t *testing.T) {
	root, err := pki.NewRoot("root.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewRoot("other.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	anchors := x509.NewCertPool()
	anchors.AddCert(root.Cert)
	const serverID, clientID = "server.test", "client.test"
	server := &rotating{}
	server.c.Store(leafCert(t, root, serverID).c)
	for _, tc := range []struct {
		name       string
		client     Certs
		serverName string
		edit       func(*tls.Config)
		ok         bool
		peer       string
	}{
		{"mutual", leafCert(t, root, clientID), serverID, nil, true, clientID},
		{"no client certificate", nil, serverID, nil, true, ""},
		{"client certificate from another anchor", leafCert(t, other, clientID), serverID, nil, false, ""},
		{"server is not who the client wants", leafCert(t, root, clientID), "someone.else.test", nil, false, ""},
		{"TLS 1.2 client", leafCert(t, root, clientID), serverID, func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 }, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli := Client(tc.client, anchors, tc.serverName, ALPNH2, nil)
			if tc.client == nil {
				cli = Client(staticCerts{&tls.Certificate{}}, anchors, tc.serverName, ALPNH2, nil)
			}
			if tc.edit != nil {
				tc.edit(cli)
			}
			_, s, cerr, serr := handshake(t, Server(server, anchors), cli)
			if ok := cerr == nil && serr == nil; ok != tc.ok {
				t.Fatalf("handshake ok %v, want %v (client %v, server %v)", ok, tc.ok, cerr, serr)
			}
			if tc.ok && PeerID(&s) != tc.peer {
				t.Errorf("peer %q, want %q", PeerID(&s), tc.peer)
			}
		})
	}
	t.Run("a server peer from another anchor", func(t *testing.T) {
		_, _, cerr, _ := handshake(t, Server(leafCert(t, other, serverID), anchors), Client(leafCert(t, root, clientID), anchors, serverID, ALPNH2, nil))
		if cerr == nil {
			t.Error("the client accepted a server certificate from another anchor")
		}
	})
	t.Run("rotation", func(t *testing.T) {
		srv := Server(server, anchors)
		cli := Client(leafCert(t, root, clientID), anchors, serverID, ALPNH2, nil)
		c1, _, _, _ := handshake(t, srv, cli)
		next := leafCert(t, root, serverID).c
		server.c.Store(next)
		c2, _, cerr, serr := handshake(t, srv, cli)
		if cerr != nil || serr != nil {
			t.Fatal(cerr, serr)
		}
		if c1.PeerCertificates[0].Equal(c2.PeerCertificates[0]) || !c2.PeerCertificates[0].Equal(next.Leaf) {
			t.Error("the new connection did not get the rotated certificate")
		}
	})
}

// TestExpiredPeerRefused: a peer whose certificate has expired is refused,
// also when the client holds a session ticket from before the expiry (Go
// checks the peer certificate's expiry before it resumes a session), in
// either direction: an expired proxy reaches no peer, and no peer reaches
// it. The clock (tls.Config.Time) is moved past the expiry.
func TestExpiredPeerRefused(t *testing.T) {
	root, err := pki.NewRoot("root.test", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	anchors := x509.NewCertPool()
	anchors.AddCert(root.Cert)
	const serverID, clientID = "server.test", "client.test"
	for _, tc := range []struct {
		name                   string
		serverLife, clientLife time.Duration
		refuser                string
	}{
		{"the client's certificate expired", 12 * time.Hour, time.Hour, "server"},
		{"the server's certificate expired", time.Hour, 12 * time.Hour, "client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var skew atomic.Int64
			clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			srv := Server(leafCertFor(t, root, serverID, tc.serverLife), anchors)
			srv.Time = clock
			cli := Client(leafCertFor(t, root, clientID, tc.clientLife), anchors, serverID, ALPNOpaque, tls.NewLRUClientSessionCache(8))
			cli.Time = clock
			if _, _, cerr, serr := handshake(t, srv, cli); cerr != nil || serr != nil {
				t.Fatalf("before the expiry: client %v, server %v", cerr, serr)
			}
			if c, _, cerr, serr := handshake(t, srv, cli); cerr != nil || serr != nil || !c.DidResume {
				t.Fatalf("before the expiry, again: resumed %v, client %v, server %v", c.DidResume, cerr, serr)
			}

			skew.Store(int64(2 * time.Hour))
			c, s, cerr, serr := handshake(t, srv, cli)
			if cerr == nil && serr == nil {
				t.Fatalf("connected with an expired certificate (resumed: client %v, server %v)", c.DidResume, s.DidResume)
			}
			refusal := map[string]error{"client": cerr, "server": serr}[tc.refuser]
			if refusal == nil || !strings.Contains(refusal.Error(), "expired") {
				t.Errorf("the %s's error %v, want one about the expiry (client %v, server %v)", tc.refuser, refusal, cerr, serr)
			}
		})
	}
}
