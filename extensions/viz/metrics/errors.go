package metrics

import "fmt"

// BadRequestError is an error in the caller's request (an unknown kind, a bad
// window, ...), as opposed to a failure to answer it.
type BadRequestError struct{ msg string }

func (e *BadRequestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &BadRequestError{msg: fmt.Sprintf("metrics: "+format, args...)}
}
