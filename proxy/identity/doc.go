// Package identity obtains and renews the proxy's workload certificate: it
// keeps a private key in memory (never on disk), sends a CSR with the pod's
// ServiceAccount token to the identity service's Certify RPC, and renews at
// about 70 % of the certificate's lifetime, retrying with backoff. The proxy
// is not ready before the first certificate.
package identity
