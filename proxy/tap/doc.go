// Package tap serves conduit.tap.v1.Tap/Observe (proto/tap/v1): it streams
// the HTTP requests the proxy routes to the clients that observe them.
//
// The data path reports every request to a Hub: Start when the request's
// headers are known, then Response when the response headers arrive and End
// when the response stream ends (or Fail when no response came). When nobody
// observes, Start is one atomic load and allocates nothing, and the *Tap it
// returns is nil (every method of a nil *Tap is a no-op).
//
// Each Observe stream is an observer with its own filter, rate limit
// (max_rps, excess requests skipped), request limit, stream ids and bounded
// queue. The data path never blocks: when an observer's queue is full its
// events are dropped (a request whose request_init was dropped sends nothing
// more to that observer). Observers are published as an immutable snapshot
// (copy on write), so a request keeps the observers it matched at its start
// even when one leaves or joins meanwhile.
package tap
