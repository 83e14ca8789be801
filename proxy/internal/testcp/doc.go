// Package testcp is an in-process control plane for tests and benchmarks: a
// CA, an identity service (Certify) and a destination service (Get,
// GetProfile) over TLS on loopback, answering from maps the caller fills.
package testcp
