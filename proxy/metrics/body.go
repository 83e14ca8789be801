package metrics

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// Body wraps a response body and records the response when the stream ends
// (EOF, error or close), so latency covers the whole response and gRPC
// trailers can be classified.
type Body struct {
	io.ReadCloser
	Reg   *Registry
	Key   RequestKey
	Start time.Time
	Resp  *http.Response
	// Class classifies the HTTP status (nil: 5xx is a failure). An
	// interface rather than a func so that a route (a pointer) is passed
	// without allocating a closure per request.
	Class Classifier
	// OnDone runs once after recording (e.g. to release a timeout).
	OnDone func()
	// OnEnd, when set, observes the end of the stream (tap).
	OnEnd EndHook
	once  sync.Once
	n     uint64 // body bytes read
}

// Classifier tells whether an HTTP status is a failure.
type Classifier interface {
	IsFailure(status int) bool
}

// EndHook observes the end of a response stream: the body bytes, the gRPC
// status ("" when none), the classification, and the error when the stream
// failed instead of completing (nil otherwise).
type EndHook interface {
	End(bytes uint64, grpcStatus string, failure bool, err error)
}

// errNotWritable is Write's error for a body that is not an upgraded
// connection.
var errNotWritable = errors.New("metrics: response body is not writable")

// Write passes through to the body of a 101 Switching Protocols response,
// which net/http makes an io.ReadWriteCloser (the upgraded connection):
// httputil.ReverseProxy refuses to proxy an upgrade whose body cannot be
// written.
func (b *Body) Write(p []byte) (int, error) {
	if w, ok := b.ReadCloser.(io.Writer); ok {
		return w.Write(p)
	}
	return 0, errNotWritable
}

// WouldBlock tells whether a Read would block, when the wrapped body can
// tell (the HTTP/2 fast path's bodies can); otherwise it says it may.
// http.NoBody never blocks: the HTTP/2 fast path then ends the stream with
// the response's HEADERS, as a gRPC client needs of a trailers-only
// response (an error status from a gRPC server); sent as HEADERS and then
// an empty DATA frame ending the stream, grpc-go reads the status as
// headers and fails the call with "server closed the stream without
// sending trailers".
func (b *Body) WouldBlock() bool {
	if b.ReadCloser == http.NoBody {
		return false
	}
	if bb, ok := b.ReadCloser.(interface{ WouldBlock() bool }); ok {
		return bb.WouldBlock()
	}
	return true
}

func (b *Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += uint64(n)
	if err != nil {
		if err == io.EOF {
			b.record(nil)
		} else {
			b.record(err)
		}
	}
	return n, err
}

// Close records the response if not done yet.
func (b *Body) Close() error {
	err := b.ReadCloser.Close()
	b.record(nil)
	return err
}

// record runs once; streamErr is the read error that ended the stream.
func (b *Body) record(streamErr error) {
	b.once.Do(func() {
		status := b.Resp.StatusCode
		var failure bool
		if b.Class != nil {
			failure = b.Class.IsFailure(status)
		} else {
			failure = status >= 500
		}
		gs := b.Resp.Trailer.Get("Grpc-Status")
		if gs == "" {
			gs = b.Resp.Header.Get("Grpc-Status")
		}
		if gs != "" && gs != "0" {
			failure = true
		}
		if streamErr != nil {
			failure = true
		}
		b.Reg.response(b.Key, status, grpcLabel(gs), failure, time.Since(b.Start))
		if b.OnEnd != nil {
			b.OnEnd.End(b.n, gs, failure, streamErr)
		}
		if b.OnDone != nil {
			b.OnDone()
		}
	})
}
