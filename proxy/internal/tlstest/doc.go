// Package tlstest holds what the proxy's tests share to speak TLS: a real
// ClientHello captured from crypto/tls, and leaf certificates signed by a
// test CA.
package tlstest
