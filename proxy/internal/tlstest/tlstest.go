package tlstest

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

// ClientHello captures the first record crypto/tls sends as a client for
// sni and alpn: a real ClientHello, as a meshed proxy sends it.
func ClientHello(t testing.TB, sni string, alpn []string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_ = c.Handshake()
		a.Close()
	}()
	var buf bytes.Buffer
	tmp := make([]byte, 4096)
	_ = b.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, err := b.Read(tmp)
		buf.Write(tmp[:n])
		if err != nil || buf.Len() >= 5 && buf.Len() >= 5+int(buf.Bytes()[3])<<8|int(buf.Bytes()[4]) {
			break
		}
	}
	b.Close()
	return buf.Bytes()
}

// Leaf returns a certificate for name, with a new key, signed by ca and
// valid for validity.
func Leaf(t testing.TB, ca *pki.CA, name string, validity time.Duration) tls.Certificate {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.SignLeaf(name, key.Public(), validity)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
}
