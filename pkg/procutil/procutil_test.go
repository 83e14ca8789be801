package procutil

import (
	"context"
	"testing"
	"time"
)

func TestDelayCancel(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	ctx, cancel := DelayCancel(parent, 200*time.Millisecond, func() { close(stopped) })
	defer cancel()
	select {
	case <-ctx.Done():
		t.Fatal("ended before its parent")
	case <-time.After(50 * time.Millisecond):
	}
	stop()
	at := time.Now()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("onStop not called when the parent ended")
	}
	if ctx.Err() != nil {
		t.Fatal("ended with its parent, want after the delay")
	}
	select {
	case <-ctx.Done():
		if d := time.Since(at); d < 200*time.Millisecond {
			t.Errorf("ended %s after its parent, want at least the 200ms delay", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not end after the delay")
	}

	// No delay: ends with the parent; cancel ends it at once.
	parent2, stop2 := context.WithCancel(context.Background())
	ctx2, cancel2 := DelayCancel(parent2, 0, nil)
	defer cancel2()
	stop2()
	select {
	case <-ctx2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("no delay: did not end with its parent")
	}
	ctx3, cancel3 := DelayCancel(context.Background(), time.Hour, nil)
	cancel3()
	if ctx3.Err() == nil {
		t.Error("cancel did not end the context")
	}
}
