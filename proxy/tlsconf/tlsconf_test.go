package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

func TestPeerID(t *testing.T) {
	leaf := &x509.Certificate{DNSNames: []string{"web.ns.serviceaccount.identity.conduit.cluster.local"}}
	tests := []struct {
		name string
		cs   *tls.ConnectionState
		want string
	}{
		{"nil", nil, ""},
		{"no client cert", &tls.ConnectionState{}, ""},
		{"unverified cert is ignored", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}, ""},
		{"verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}, "web.ns.serviceaccount.identity.conduit.cluster.local"},
	}
	for _, tt := range tests {
		if got := PeerID(tt.cs); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestConfigs(t *testing.T) {
	s := Server(nil, nil)
	if s.MinVersion != tls.VersionTLS13 || s.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("server config %+v", s)
	}
	c := Client(nil, nil, "peer", ALPNOpaque, nil)
	if c.ServerName != "peer" || len(c.NextProtos) != 1 || c.NextProtos[0] != ALPNOpaque || c.InsecureSkipVerify {
		t.Errorf("client config %+v", c)
	}
}
