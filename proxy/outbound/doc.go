// Package outbound serves the proxy's outbound listener: it resolves each
// HTTP request's authority (or the connection's original destination)
// through the destination API, applies the service profile (routes,
// timeouts, retries within a budget, traffic split), balances every request
// over the endpoints with P2C + peak-EWMA, and reaches meshed endpoints over
// one mTLS HTTP/2 connection each (HTTP/1 is carried over it). Opaque TCP to
// a meshed endpoint is wrapped in mTLS; anything unknown goes to its
// original destination unchanged.
package outbound
