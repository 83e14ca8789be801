// Package h1 is the proxy's HTTP/1.1 fast path: one goroutine per client
// connection reads a request head, writes it with its body to a pooled
// upstream connection in one write, reads the response and copies it back,
// with no goroutine hand-off and no per-request allocation on the way.
//
// It handles the common case only: an HTTP/1.1 request without Upgrade,
// Expect, CONNECT or an absolute-form target, framed by Content-Length or
// chunked. Anything else, including a head that does not parse, is handed
// over (with the bytes already read) to the general net/http path at a
// request boundary, so behaviour at the edges stays net/http's.
//
// Two bridges join it to net/http: a Call may name a RoundTrip function
// instead of a Pool, and the server then sends the request as an
// http.Request (to an HTTP/2 connection) and writes the http.Response back
// as HTTP/1.1; and Pool.RoundTrip sends an http.Request on a pooled
// connection in the caller's goroutine, for net/http handlers.
package h1
