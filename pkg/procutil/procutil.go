// Package procutil is what every Conduit main calls first: it sizes the Go
// runtime to the container (GOMAXPROCS from the CPU quota, GOMEMLIMIT from the
// memory limit) and turns SIGTERM/SIGINT into a context cancellation so that
// each component drains gracefully.
package procutil

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// Setup sizes the runtime to the cgroup. Since Go 1.25 the runtime derives
// GOMAXPROCS from the cgroup CPU limit itself; GOMEMLIMIT is set to 90 % of
// the cgroup memory limit unless the environment already sets it.
func Setup(logger *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") == "" {
		limit, err := memlimit.Set(
			memlimit.WithRatio(0.9),
			memlimit.WithProvider(memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)),
			memlimit.WithLogger(slog.New(slog.DiscardHandler)),
		)
		if err != nil {
			logger.Debug("no memory limit found", "err", err)
		} else {
			logger.Debug("runtime sized", "gomemlimit", limit)
		}
	}
	logger.Debug("runtime sized", "gomaxprocs", runtime.GOMAXPROCS(0))
}

// SignalContext returns a context cancelled on SIGTERM or SIGINT. A second
// signal exits at once.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			return
		}
		<-ch
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// DelayCancel returns a context that ends delay after parent does, so that a
// server keeps serving while its Service's endpoints drop the replica, then
// drains as usual (core/injector.DefaultShutdownDelay says why the
// injector needs it). onStop, if not nil, runs
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
