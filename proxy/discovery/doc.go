// Package discovery is the proxy's client of the destination API. It keeps
// one Get or GetProfile stream per name in use, applies snapshots and deltas,
// keeps the last known state while the control plane is unreachable and
// reconnects with backoff. Names unused for a while are dropped; what their
// streams last said is kept for a while longer, for a new stream of the same
// name that the control plane does not answer.
package discovery
