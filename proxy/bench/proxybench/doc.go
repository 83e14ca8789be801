// Command proxybench is the `make bench-proxy` load benchmark: on loopback it
// compares a direct client→server path with two Conduit proxies (client
// outbound → mTLS → server inbound), nginx and haproxy, for HTTP/1.1 and
// gRPC at constant request rates with fortio, and measures opaque TCP
// throughput. It prints one Markdown table.
package main
