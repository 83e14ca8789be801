// Package app wires the proxy together from its configuration: identity,
// discovery, the inbound, outbound and admin listeners, and the graceful
// drain on shutdown. cmd/proxy and the integration tests both use it.
package app
