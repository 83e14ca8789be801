// Package grpcecho is a gRPC echo service (grpc.testing.TestService) and
// the check that drives it, shared by the e2e workload (testapp serve
// -grpc-addr, testapp grpc) and the proxy's integration tests, so that the
// same calls prove gRPC through the proxies in-process and on the cluster.
package grpcecho
