// Package realcp holds the proxy's integration tests against the real
// control plane: in one process, on loopback, the identity service of
// core/identity (its CA loaded from the issuer Secret that pki made, tokens
// validated by TokenReview) and the destination service of core/destination
// (its index fed by informers), each behind its own proxy that terminates
// TLS as the control-plane pods' proxies do, over a fake Kubernetes API
// (client-go's fake clientset, objects written as YAML). Workload proxies
// built as proxy/cmd builds them get their certificates from that identity
// service and their endpoints from that destination service, and talk
// mTLS to each other.
//
// proxy/app's tests run the proxies against proxy/internal/testcp, a
// stand-in that answers from maps; these tests check that the proxies and
// the real services agree (identities, audiences, labels, protocol hints,
// streamed updates). The package has no code besides its tests.
package realcp
