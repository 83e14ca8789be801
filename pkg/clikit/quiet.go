package clikit

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

// QuietConnectionEnds keeps client-go's background goroutines from printing
// a connection's normal end as an error: a port-forward's copy loop reports
// "Error copying from local connection to remote stream" (EOF, a closed or
// reset connection) through utilruntime.HandleError, which logs it to
// stderr, between the command's own output, whenever the command closes a
// forwarded connection early (e.g. once it has read what it needed). Other
// errors still go to the handlers installed before. Call it once, at start.
func QuietConnectionEnds() {
	next := utilruntime.ErrorHandlers
	utilruntime.ErrorHandlers = []utilruntime.ErrorHandler{
		func(ctx context.Context, err error, msg string, kv ...any) {
			if connectionEnd(err) {
				return
			}
			for _, h := range next {
				h(ctx, err, msg, kv...)
			}
		},
	}
}

// connectionEnd reports whether err only says that a connection ended: EOF,
// use of a closed connection, reset or broken pipe.
func connectionEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
