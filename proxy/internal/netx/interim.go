package netx

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
)

// Interim takes an informational (1xx) response head that came for a
// request before its final response, and sends it on towards the client.
// A proxy must forward 1xx responses (RFC 9110, 15.2); each hop answers
// Expect: 100-continue itself, so 100 is not passed (see PassesInterim),
// nor is 101, which ends the exchange.
type Interim interface {
	// Interim sends on the informational response code, with h, that
	// came for the request whose context is a. It refuses one that comes
	// once the request's round trip has returned (net/http's transports
	// call from goroutines of their own, and may call late).
	Interim(a *AbortCtx, code int, h http.Header) error
}

// SetInterim makes i the Interim of the requests whose context this is
// (or is derived from), before it is used: to PassInterim and to
// net/http's transports, the context then holds an httptrace.ClientTrace
// whose Got1xxResponse calls i.
func (a *AbortCtx) SetInterim(i Interim) { a.interim = i }

// PassesInterim reports whether an informational response with code is
// passed on: 102, 103 and the other 1xx but 100 Continue and 101
// Switching Protocols.
func PassesInterim(code int) bool { return code > 101 && code < 200 }

// PassInterim hands an informational response received for the request
// whose context is ctx to the Got1xxResponse of its httptrace.ClientTrace:
// the Interim of its AbortCtx (the proxy's own servers), or net/http's
// ReverseProxy's, which writes to its ResponseWriter. It does nothing
// when there is none. It runs in the caller's goroutine, before the final
// response is returned; an error (the client went) fails the round trip.
func PassInterim(ctx context.Context, code int, h http.Header) error {
	if tr := httptrace.ContextClientTrace(ctx); tr != nil && tr.Got1xxResponse != nil {
		return tr.Got1xxResponse(code, textproto.MIMEHeader(h))
	}
	return nil
}

// traceKey is the key under which package httptrace keeps a context's
// ClientTrace, so that an AbortCtx can answer for it without a context of
// its own per request (context.WithValue and the trace would be two
// allocations on every request of the fast paths). httptrace does not
// export it; ContextClientTrace tells it, asking a context that records
// the key it is asked for. TestTraceKey fails if that ever changes.
var traceKey = func() any {
	var k keyRecorder
	httptrace.ContextClientTrace(&k)
	return k.key
}()

type keyRecorder struct {
	context.Context // nil: ContextClientTrace only calls Value
	key             any
}

func (k *keyRecorder) Value(key any) any {
	k.key = key
	return nil
}

// clientTrace returns the trace that passes 1xx responses to a.interim,
// made on the first call (net/http's transports ask for a trace on every
// request; the proxy's own clients only when a 1xx comes).
func (a *AbortCtx) clientTrace() *httptrace.ClientTrace {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.trace == nil {
		i := a.interim
		a.trace = &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			return i.Interim(a, code, http.Header(h))
		}}
	}
	return a.trace
}
