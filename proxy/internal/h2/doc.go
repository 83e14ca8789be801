// Package h2 is the proxy's HTTP/2 fast path between meshed proxies: a lean
// client and server built on golang.org/x/net/http2's framer and hpack.
//
// net/http's HTTP/2 server passes every request through three goroutines
// (frame reader, serve loop, handler) and every write through a fourth, and
// its client sends each request from a goroutine of its own and flushes
// HEADERS and DATA separately. Here a connection has one reader goroutine;
// a request's HEADERS, small DATA and END_STREAM leave in one write from
// the goroutine that has them, and the server runs its handler, a
// RoundTripper, in one goroutine per stream that writes the response
// itself.
//
// Both ends enforce the protocol's limits (flow control, frame and header
// sizes, concurrent streams) and answer violations with the error codes of
// RFC 9113; what they do not implement (server push, priorities, the
// extended CONNECT) is refused or ignored as the RFC allows.
//
// No goroutine waits for ever on a peer that stops reading: every write is
// bounded by a write deadline (WriteTimeout, DefaultWriteTimeout) after
// which the connection is closed as dead, and control frames (ACKs,
// WINDOW_UPDATE, RST_STREAM, a Shutdown's GOAWAY) are written by the
// writer at hand or a pooled worker, never by the reader or Shutdown.
package h2
