// Package servetest holds what the inbound and outbound proxies' tests,
// both proxies a Server (Serve on a listener, Shutdown to drain), share:
// serving one on loopback for a test (Serve), the scenarios each
// package's test runs on the proxy it builds (ShutdownWhileServing), and
// the TCP servers that stand for an application or a peer (TCP).
package servetest
