package metrics

import (
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
	// IsFailure classifies the HTTP status (nil: 5xx is a failure).
	IsFailure func(status int) bool
	// OnDone runs once after recording (e.g. to release a timeout).
	OnDone func()
	once   sync.Once
}

func (b *Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.record(err != io.EOF)
	}
	return n, err
}

// Close records the response if not done yet.
func (b *Body) Close() error {
	err := b.ReadCloser.Close()
	b.record(false)
	return err
}

func (b *Body) record(streamErr bool) {
	b.once.Do(func() {
		status := b.Resp.StatusCode
		var failure bool
		if b.IsFailure != nil {
			failure = b.IsFailure(status)
		} else {
			failure = status >= 500
		}
		if gs := b.Resp.Trailer.Get("Grpc-Status"); gs != "" && gs != "0" {
			failure = true
		} else if gs := b.Resp.Header.Get("Grpc-Status"); gs != "" && gs != "0" {
			failure = true
		}
		if streamErr {
			failure = true
		}
		b.Reg.Response(b.Key, status, failure, time.Since(b.Start))
		if b.OnDone != nil {
			b.OnDone()
		}
	})
}
