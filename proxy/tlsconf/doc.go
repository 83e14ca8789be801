// Package tlsconf builds the mutual-TLS configurations used between proxies
// and towards the control plane: TLS 1.3 only, ALPN "h2" for HTTP and
// "conduit.opaque" for opaque TCP, certificates from the identity manager and
// peers verified as a DNS SAN against the trust anchors.
package tlsconf
