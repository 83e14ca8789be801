package netx

import "errors"

// ErrUnsent marks a failure after which a request was certainly not sent
// upstream: the connection could not be made, or the server refused the
// stream unprocessed (HTTP/2 REFUSED_STREAM, or above a GOAWAY's last
// stream). Such a request may go to another upstream, whatever its method.
var ErrUnsent = errors.New("request not sent")

// Unsent marks err with ErrUnsent; its message is err's.
func Unsent(err error) error {
	if err == nil || errors.Is(err, ErrUnsent) {
		return err
	}
	return unsentError{err}
}

type unsentError struct{ err error }

func (e unsentError) Error() string   { return e.err.Error() }
func (e unsentError) Unwrap() []error { return []error{e.err, ErrUnsent} }

// HeaderUnsent marks an error response from a meshed pod's inbound proxy to
// a meshed peer's proxy: the request was not sent to the application (it
// does not accept connections: stopping, say), so the peer may send it to
// another endpoint. It is the HTTP/1.1 (and net/http HTTP/2) counterpart of
// REFUSED_STREAM. It is hop-by-hop between two proxies: an inbound proxy
// removes it from the application's responses, and it is believed only
// from an authenticated peer.
const HeaderUnsent = "Conduit-Proxy-Unsent"
