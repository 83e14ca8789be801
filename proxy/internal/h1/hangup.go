package h1

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// watchDelay is how long an exchange runs before its client connection is
// watched for a hang-up: a response that takes longer (a long poll, a
// stream of server-sent events, a slow report) is aborted upstream when
// the client goes, instead of running on until the upstream answers or
// writes again. Quicker exchanges, nearly all, cost a timer reset and stop.
const watchDelay = 100 * time.Millisecond

// errClientGone cancels an exchange whose client closed its connection.
var errClientGone = errors.New("h1: the client closed the connection")

// hangup watches an exchange's client connection for its end while the
// response is awaited or streamed. Once the request has been read whole
// and nothing of a next one is buffered, a read on the client connection
// can only end with EOF or an error (the client went, or half-closed as
// net/http and hyper take to mean the same), with bytes of a pipelined
// request (kept for it), or with the past deadline the exchange sets to
// stop it.
type hangup struct {
	timer *time.Timer
	gone  atomic.Bool // the client went during the current exchange

	mu       sync.Mutex
	armed    bool          // an exchange is running
	clearDL  bool          // the client connection's idle read deadline is still set: the watch clears it
	watching bool          // a read on the client connection is running
	done     chan struct{} // closed when that read has returned
	// When the request has been read whole: ready, or body.done.
	ready bool
	extra int      // bytes of a next request buffered (ready only)
	body  *reqBody // forwardRT's request body, read by the round tripper
	// What a hang-up aborts: forwardRT's request context, or the upstream
	// connection of forward.
	abort *netx.AbortCtx
	up    *upConn
	peek  [1]byte
	got   int // bytes of a next request the watch read into peek
}

// startWatch arms the hang-up watch for the next exchange; with clearDL
// the watch clears the client connection's read deadline (see ServeConn).
func (x *exchange) startWatch(clearDL bool) {
	h := &x.hang
	h.gone.Store(false)
	h.mu.Lock()
	h.armed = true
	h.clearDL = clearDL
	h.clear()
	h.mu.Unlock()
	if h.timer == nil {
		h.timer = time.AfterFunc(watchDelay, x.watch)
	} else {
		h.timer.Reset(watchDelay)
	}
}

// watchReset forgets what an earlier attempt at the exchange's request set.
func (x *exchange) watchReset() {
	x.hang.mu.Lock()
	x.hang.clear()
	x.hang.mu.Unlock()
}

// clear forgets the current request's state; mu is held.
func (h *hangup) clear() {
	h.ready, h.extra, h.body, h.abort, h.up = false, 0, nil, nil, nil
}

// watchReady says the request has been read off the client connection
// whole; extra bytes of a next request are buffered.
func (x *exchange) watchReady(extra int) {
	x.hang.mu.Lock()
	x.hang.ready, x.hang.extra = true, extra
	x.hang.mu.Unlock()
}

// watchAbort sets what a hang-up aborts: the round trip's context, or the
// upstream connection (nil: nothing yet).
func (x *exchange) watchAbort(abort *netx.AbortCtx, up *upConn) {
	x.hang.mu.Lock()
	x.hang.abort, x.hang.up = abort, up
	x.hang.mu.Unlock()
}

// watchBody has the watch wait for body to be read whole.
func (x *exchange) watchBody(body *reqBody) {
	x.hang.mu.Lock()
	x.hang.body = body
	x.hang.mu.Unlock()
}

// watch runs watchDelay into an exchange, on the timer's goroutine.
func (x *exchange) watch() {
	h := &x.hang
	h.mu.Lock()
	// A run of the timer can start as the exchange ends, and get the lock
	// only once the next one is armed: it then serves that one, and a
	// later run finds it watching.
	if !h.armed || h.watching {
		h.mu.Unlock()
		return
	}
	if h.clearDL {
		// Under mu, with the exchange armed: the next idle wait's deadline
		// is set only once stopWatch disarmed it.
		_ = x.c.SetReadDeadline(time.Time{})
		h.clearDL = false
	}
	ready, extra := h.ready, h.extra
	if !ready && h.body != nil && h.body.done.Load() {
		// The round tripper read it to the end and reads no more: the
		// buffered reader is still until the next request.
		ready, extra = true, x.br.Buffered()
	}
	switch {
	case !ready: // the body is still coming: look again later
		h.timer.Reset(watchDelay)
		h.mu.Unlock()
		return
	case extra > 0: // the client has sent more: it is there
		h.mu.Unlock()
		return
	}
	h.watching = true
	done := make(chan struct{})
	h.done = done
	h.mu.Unlock()

	n, err := x.c.Read(h.peek[:])

	h.mu.Lock()
	h.got = n
	if n == 0 && err != nil && h.armed && !isTimeout(err) {
		h.gone.Store(true)
		// Under mu: once watchAbort has cleared them, the exchange
		// owns its upstream connection again (it may pool it).
		switch {
		case h.abort != nil:
			h.abort.Cancel(errClientGone)
		case h.up != nil:
			_ = h.up.c.SetDeadline(time.Unix(1, 0)) // its reads and writes fail, and it closes
		}
	}
	h.watching = false
	close(done)
	h.mu.Unlock()
}

// stopWatch ends the watch at the end of an exchange, waiting for a read in
// progress to return. A byte of the next request it read is put before the
// connection.
func (x *exchange) stopWatch() {
	h := &x.hang
	h.timer.Stop()
	h.mu.Lock()
	h.armed = false
	watching, done := h.watching, h.done
	h.clear()
	h.mu.Unlock()
	if watching {
		_ = x.c.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = x.c.SetReadDeadline(time.Time{})
	}
	h.mu.Lock()
	if h.got > 0 {
		x.src.pre = append(x.src.pre, h.peek[:h.got]...)
		h.got = 0
	}
	h.mu.Unlock()
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
