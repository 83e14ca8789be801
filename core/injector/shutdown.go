package injector

import (
	"context"
	"time"
)

// DefaultShutdownDelay is how long the injector keeps serving after SIGTERM
// (controller injector --shutdown-delay).
//
// The API server reaches the webhook through the conduit-injector Service,
// that is through kube-proxy's rules, which drop a terminating replica only
// a moment after it was told to stop (up to about a second on a loaded node).
// A replica that stopped listening at once would, in that window, refuse or
// (once its pod is gone) black-hole the admission calls routed to it; with
// failurePolicy Ignore every pod created then is admitted without a proxy.
// That is what a rolling restart of the injector (mesh upgrade, mesh identity
// rotate-anchors) followed by pod creations hit.
const DefaultShutdownDelay = 5 * time.Second

// DelayCancel returns a context that ends delay after parent does, so that a
// server keeps serving (and its informers and hooks keep running) while the
// Service's endpoints drop it, then drains as usual. onStop, if not nil, runs
// when parent ends. cancel ends the returned context at once.
func DelayCancel(parent context.Context, delay time.Duration, onStop func()) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	go func() {
		select {
		case <-parent.Done():
		case <-ctx.Done():
			return
		}
		if onStop != nil {
			onStop()
		}
		if delay <= 0 {
			cancel()
			return
		}
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}
