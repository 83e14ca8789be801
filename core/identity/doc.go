// Package identity is Conduit's certificate authority. It holds the issuer
// (a CA certificate and key read from the conduit-identity-issuer Secret in
// the cert-manager layout) and the trust-anchor bundle (the
// conduit-identity-trust-roots ConfigMap), reloads them when they change, and
// serves conduit.identity.v1.Identity: Certify checks a pod's ServiceAccount
// token with a TokenReview and signs a short-lived ECDSA P-256 leaf whose only
// DNS SAN is the workload identity
// "<sa>.<ns>.serviceaccount.identity.<control-plane-ns>.<trust-domain>".
//
// The core logic sits behind small interfaces (TokenValidator, IssuerSource)
// so that it is tested with fakes; the Kubernetes implementations are
// TokenReviewValidator and Watcher. CheckExpiry is the pure function behind
// `mesh check`'s anchor and issuer expiry warnings.
package identity
