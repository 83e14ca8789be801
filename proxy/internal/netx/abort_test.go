package netx

import (
	"context"
	"errors"
	"testing"
	"time"
)

type abortRec struct{ causes []error }

func (r *abortRec) Abort(cause error) { r.causes = append(r.causes, cause) }

var errGone = errors.New("the client went")

// TestAbortCtxAborter: Cancel calls the registered Aborter once, with its
// cause, in the caller's goroutine; StopAbort removes only its own; a
// canceled context or one holding another Aborter registers none.
func TestAbortCtxAborter(t *testing.T) {
	var a AbortCtx
	if a.Err() != nil || a.Cause() != nil || a.Value("k") != nil {
		t.Fatal("a new AbortCtx is not live and empty")
	}
	r1, r2 := &abortRec{}, &abortRec{}
	if !a.OnAbort(r1) {
		t.Fatal("OnAbort on a live context: false")
	}
	if a.OnAbort(r2) {
		t.Error("OnAbort while another is registered: true")
	}
	if a.StopAbort(r2) { // not the one registered: nothing
		t.Error("StopAbort of an Aborter not registered: true")
	}
	a.Cancel(errGone)
	a.Cancel(errors.New("again"))
	if a.StopAbort(r1) {
		t.Error("StopAbort after Cancel took the Aborter: true")
	}
	if len(r1.causes) != 1 || r1.causes[0] != errGone {
		t.Errorf("Aborter called with %v, want once with %v", r1.causes, errGone)
	}
	if len(r2.causes) != 0 {
		t.Errorf("an Aborter never registered was called: %v", r2.causes)
	}
	if !errors.Is(a.Err(), context.Canceled) || a.Cause() != errGone {
		t.Errorf("after Cancel: Err %v, Cause %v", a.Err(), a.Cause())
	}
	if got := Cause(&a); got != errGone { // before any Done
		t.Errorf("Cause %v, want %v", got, errGone)
	}
	if a.OnAbort(r2) {
		t.Error("OnAbort after Cancel: true")
	}
	select {
	case <-a.Done(): // made after Cancel: closed at once
	default:
		t.Error("Done made after Cancel is not closed")
	}
	if got := context.Cause(&a); got != errGone {
		t.Errorf("context.Cause %v, want %v", got, errGone)
	}

	var b AbortCtx
	r3 := &abortRec{}
	if !b.OnAbort(r3) {
		t.Fatal("OnAbort: false")
	}
	if !b.StopAbort(r3) {
		t.Error("StopAbort of the Aborter registered: false")
	}
	if !b.OnAbort(r2) {
		t.Error("OnAbort after StopAbort: false")
	}
	b.Cancel(nil)
	if len(r3.causes) != 0 || len(r2.causes) != 1 || r2.causes[0] != context.Canceled {
		t.Errorf("stopped Aborter called %v; registered one %v, want once with context.Canceled", r3.causes, r2.causes)
	}
}

type abortKey struct{}

// TestAbortCtxAsContext: to package context it is a context like its own:
// derived contexts, AfterFunc and Cause follow Cancel, Err is set only
// with Done closed, and the parent's values are seen.
func TestAbortCtxAsContext(t *testing.T) {
	var a AbortCtx
	a.SetParent(context.WithValue(context.Background(), abortKey{}, "v"))
	if a.Value(abortKey{}) != "v" {
		t.Fatal("the parent's value is not seen")
	}
	child, cancelChild := context.WithCancel(&a)
	defer cancelChild()
	if child.Value(abortKey{}) != "v" {
		t.Error("a derived context does not see the parent's value")
	}
	ran := make(chan struct{})
	context.AfterFunc(&a, func() { close(ran) })
	if a.Err() != nil || child.Err() != nil {
		t.Fatal("canceled before Cancel")
	}
	a.Cancel(errGone)
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a derived context was not canceled")
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("context.AfterFunc did not run")
	}
	if got := context.Cause(child); got != errGone {
		t.Errorf("derived context's cause %v, want %v", got, errGone)
	}
	if got := context.Cause(&a); got != errGone {
		t.Errorf("context.Cause %v, want %v", got, errGone)
	}
	if !errors.Is(a.Err(), context.Canceled) {
		t.Errorf("Err %v", a.Err())
	}
}

// TestAbortCtxAllocs: registering, canceling and unregistering allocate
// nothing (the point of the type; it lives in an allocation of its
// owner's).
func TestAbortCtxAllocs(t *testing.T) {
	r := &abortRec{causes: make([]error, 0, 1)}
	ctxs := make([]AbortCtx, 101) // AllocsPerRun runs once more to warm up
	i := 0
	n := testing.AllocsPerRun(100, func() {
		r.causes = r.causes[:0]
		a := &ctxs[i]
		i++
		if !a.OnAbort(r) {
			t.Fatal("OnAbort: false")
		}
		a.StopAbort(r)
		a.Cancel(errGone)
		_ = a.Err()
	})
	if n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}
