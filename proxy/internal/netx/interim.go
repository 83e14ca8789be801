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
	// came for the request whose context is a; it is given only the codes
	// PassesInterim passes. It refuses one that comes
	// once the request's round trip has returned (net/http's transports
	// call from goroutines of their own, and may call late).
	Interim(a *AbortCtx, code int, h http.Header) error
}

type interimKey struct{}

// WithInterim returns parent holding i: the requests whose AbortCtx has
// it as parent (SetParent) pass their informational responses to i. It is
// made once per connection, so that a request's context, in its stream's
// allocation, grows by nothing.
func WithInterim(parent context.Context, i Interim) context.Context {
	return context.WithValue(parent, interimKey{}, i)
}

// PassesInterim reports whether an informational response with code is
// passed on: 102, 103 and the other 1xx but 100 Continue and 101
// Switching Protocols.
func PassesInterim(code int) bool { return code > 101 && code < 200 }

// MaxInterims bounds the informational responses that may come before one
// final response, as net/http's transport bounds them: more fail the
// request.
const MaxInterims = 5

// InterimTrace returns a trace whose Got1xxResponse hands pass the
// informational responses PassesInterim passes, and drops the others
// (net/http's transports report 100 Continue too).
func InterimTrace(pass func(code int, h http.Header) error) *httptrace.ClientTrace {
	return &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		if !PassesInterim(code) {
			return nil
		}
		return pass(code, http.Header(h))
	}}
}

// PassInterim hands an informational response received for the request
// whose context is ctx, one PassesInterim passes (the caller checks, before
// it builds h), to the Got1xxResponse of its httptrace.ClientTrace:
// the Interim of its AbortCtx's parent (the proxy's own servers), or
// net/http's ReverseProxy's, which writes to its ResponseWriter. It does
// nothing when there is none. It runs in the caller's goroutine, before
// the final response is returned; an error (the client went) fails the
// round trip.
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

// interimTrace returns a trace that passes a's informational responses to
// the Interim its parent holds, or nil. It is made on each lookup: the
// proxy's own clients look only when a 1xx comes, net/http's transports
// once per request on the paths that take them (upgrades, Expect, the
// opt-out modes).
func (a *AbortCtx) interimTrace() *httptrace.ClientTrace {
	i, ok := a.parent.Value(interimKey{}).(Interim)
	if !ok {
		return nil
	}
	return InterimTrace(func(code int, h http.Header) error { return i.Interim(a, code, h) })
}
