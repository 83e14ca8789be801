package netx

import (
	"context"
	"sync"
	"time"
)

// AbortCtx is the context of a request that the proxy aborts when its
// client goes (the HTTP/1.1 fast path's hang-up watch), made to cost no
// allocation of its own with a round tripper that knows it. h2.Client
// registers its stream with OnAbort, where context.AfterFunc on a
// context.WithCancelCause context allocated the context, its cause
// function, its done channel, the AfterFunc context, its stop function,
// the parent's children map and the callback: nine allocations per
// request. To anything else it is an ordinary context: the first Done makes
// a cancelable context underneath, which Cancel cancels with its cause, so
// that contexts derived from it, context.AfterFunc and context.Cause work
// as with one of package context.
//
// The zero value is a live context without values (see SetParent); it
// must not be copied once used.
type AbortCtx struct {
	parent context.Context // its values; nil: none
	mu     sync.Mutex
	err    error // context.Canceled once Cancel ran
	cause  error
	f      Aborter         // registered by OnAbort, until Cancel or StopAbort
	ctx    context.Context // made by Done, from parent
	cancel context.CancelCauseFunc
}

// SetParent gives the context parent's values, before it is used. Only
// the values: parent must be a context that is never canceled (its Done
// nil), as the cancellation of the AbortCtx is its owner's alone.
func (a *AbortCtx) SetParent(parent context.Context) { a.parent = parent }

// Aborter is what OnAbort registers: Abort stops the work done for the
// request (an HTTP/2 client stream resets itself).
type Aborter interface{ Abort(cause error) }

// Cancel cancels the context with cause (context.Canceled when nil) and
// calls the registered Aborter, once, in the caller's goroutine and with
// no lock held. Later calls do nothing.
func (a *AbortCtx) Cancel(cause error) {
	if cause == nil {
		cause = context.Canceled
	}
	a.mu.Lock()
	if a.err != nil {
		a.mu.Unlock()
		return
	}
	a.err, a.cause = context.Canceled, cause
	if a.cancel != nil {
		a.cancel(cause)
	}
	f := a.f
	a.f = nil
	a.mu.Unlock()
	if f != nil {
		f.Abort(cause)
	}
}

// OnAbort registers f for Cancel to call. It reports false, registering
// nothing, when the context was canceled already or holds another
// Aborter: the caller then watches Done instead.
func (a *AbortCtx) OnAbort(f Aborter) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil || a.f != nil {
		return false
	}
	a.f = f
	return true
}

// StopAbort unregisters f, if it is the Aborter registered, and reports
// whether it was: false when Cancel took it (and calls or called it).
func (a *AbortCtx) StopAbort(f Aborter) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f != f {
		return false
	}
	a.f = nil
	return true
}

// Cause returns the cause Cancel was given, or nil before it ran.
func (a *AbortCtx) Cause() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cause
}

// Deadline implements context.Context: there is none.
func (a *AbortCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done implements context.Context. The first call makes the context
// underneath (canceled at once after Cancel).
func (a *AbortCtx) Done() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil {
		parent := a.parent
		if parent == nil {
			parent = context.Background()
		}
		a.ctx, a.cancel = context.WithCancelCause(parent)
		if a.err != nil {
			a.cancel(a.cause)
		}
	}
	return a.ctx.Done()
}

// Err implements context.Context.
func (a *AbortCtx) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Value implements context.Context: the parent's values, and when the
// parent holds an Interim (WithInterim) an httptrace.ClientTrace that calls
// it for this request (see PassInterim). Once Done made
// the context underneath, package context finds it through Value too (for
// derived contexts, AfterFunc and Cause).
func (a *AbortCtx) Value(key any) any {
	if key == traceKey && a.parent != nil {
		if tr := a.interimTrace(); tr != nil {
			return tr
		}
	}
	a.mu.Lock()
	ctx := a.ctx
	a.mu.Unlock()
	switch {
	case ctx != nil:
		return ctx.Value(key)
	case a.parent != nil:
		return a.parent.Value(key)
	}
	return nil
}

// Cause is context.Cause, which sees an AbortCtx's cause only once its
// Done was called.
func Cause(ctx context.Context) error {
	if a, ok := ctx.(*AbortCtx); ok {
		if c := a.Cause(); c != nil {
			return c
		}
	}
	return context.Cause(ctx)
}
