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
