// Package demo is Conduit's demo application: a web front end that calls a
// gRPC backend (quotes) and an HTTP/1.1 backend (counter, with configurable
// failure rate and latency), plus a constant-rate load generator. It exists
// so that `make demo` shows the mesh at work: mTLS between every hop,
// per-request balancing across replicas, and golden metrics with failures.
package demo
