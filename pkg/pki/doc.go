// Package pki creates and parses the X.509 material of the mesh: trust
// anchors, issuers and leaf certificates (ECDSA P-256). It is shared by the
// identity service, which signs workload certificates, and the CLI, which
// generates the trust anchor and issuer at install time.
package pki
