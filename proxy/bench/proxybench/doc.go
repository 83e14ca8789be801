// Command proxybench is the `make bench-proxy` load benchmark: on loopback it
// compares a direct client→server path with two Conduit proxies (client
// outbound → mTLS → server inbound), nginx and haproxy, for HTTP/1.1 and
// gRPC at constant request rates with fortio, and prints one Markdown table.
// It then measures opaque TCP throughput directly, through both Conduit
// proxies with mTLS and in plaintext, and through two nginx and two haproxy
// with mutual TLS, and prints a second table.
package main
