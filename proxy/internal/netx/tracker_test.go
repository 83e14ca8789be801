package netx

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptedListener answers Accept from a script of results, then blocks
// until closed.
type scriptedListener struct {
	results chan acceptResult
	closed  chan struct{}
}

type acceptResult struct {
	c   net.Conn
	err error
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "too many open files" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (l *scriptedListener) Accept() (net.Conn, error) {
	select {
	case r := <-l.results:
		return r.c, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *scriptedListener) Close() error   { close(l.closed); return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{} }

func TestTrackerServe(t *testing.T) {
	tests := []struct {
		name    string
		script  []acceptResult // then the listener is closed, unless an error ends the loop
		handled int
		wantErr string
	}{
		{name: "connections are handled", script: []acceptResult{{c: newBlockConn()}, {c: newBlockConn()}}, handled: 2},
		{name: "a timeout is retried", script: []acceptResult{{err: timeoutErr{}}, {c: newBlockConn()}}, handled: 1},
		{name: "another error ends the loop", script: []acceptResult{{c: newBlockConn()}, {err: errors.New("bad listener")}}, handled: 1, wantErr: "accept: bad listener"},
		{name: "closed at once", handled: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &scriptedListener{results: make(chan acceptResult), closed: make(chan struct{})}
			var tr Tracker
			handled := make(chan net.Conn, 10)
			served := make(chan error, 1)
			go func() {
				// A handler runs until its connection is closed.
				served <- tr.Serve(l, func(c net.Conn) { handled <- c; <-c.(*blockConn).closed })
			}()
			for _, r := range tt.script {
				l.results <- r
			}
			if tt.wantErr == "" {
				_ = l.Close()
			}
			err := <-served
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Serve = %v, want nil once the listener is closed", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Serve = %v, want %q", err, tt.wantErr)
			}
			var conns []*blockConn
			for range tt.handled {
				select {
				case c := <-handled:
					conns = append(conns, c.(*blockConn))
				case <-time.After(5 * time.Second):
					t.Fatal("a connection was not handled")
				}
			}
			if len(handled) != 0 {
				t.Fatalf("%d more connections handled than accepted", len(handled))
			}
			// The handlers are tracked: Wait's deadline passes while they
			// run, and it closes their connections.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			err = tr.Wait(ctx)
			if want := tt.handled > 0; errors.Is(err, context.DeadlineExceeded) != want {
				t.Fatalf("Wait with %d handlers running = %v, want the deadline: %v", tt.handled, err, want)
			}
			for i, c := range conns {
				select {
				case <-c.closed:
				default:
					t.Fatalf("connection %d was not closed by Wait", i)
				}
			}
		})
	}
}

// blockConn is a connection that is never read or written, only closed.
type blockConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func newBlockConn() *blockConn { return &blockConn{closed: make(chan struct{})} }

func (c *blockConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

// TestTrackerWait: Wait returns once everything tracked is done, counting
// what is added while it waits; when its time is up it closes the rest, and
// closes at once what is added after.
func TestTrackerWait(t *testing.T) {
	t.Run("nothing tracked", func(t *testing.T) {
		var tr Tracker
		if err := tr.Wait(context.Background()); err != nil {
			t.Fatalf("Wait = %v", err)
		}
	})
	t.Run("added while waiting", func(t *testing.T) {
		var tr Tracker
		doneA := tr.Add(newBlockConn())
		waited := make(chan error, 1)
		go func() { waited <- tr.Wait(context.Background()) }()
		time.Sleep(10 * time.Millisecond)
		doneB := tr.Add(newBlockConn())
		doneA()
		select {
		case err := <-waited:
			t.Fatalf("Wait = %v with a connection added during it still open", err)
		case <-time.After(50 * time.Millisecond):
		}
		doneB()
		select {
		case err := <-waited:
			if err != nil {
				t.Fatalf("Wait = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not return once both were done")
		}
	})
	t.Run("time is up", func(t *testing.T) {
		var tr Tracker
		c := newBlockConn()
		done := tr.Add(c)
		go func() { <-c.closed; done() }()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := tr.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want the deadline", err)
		}
		late := newBlockConn()
		defer tr.Add(late)()
		select {
		case <-late.closed:
		default:
			t.Fatal("a connection added after Wait's time was up was left open")
		}
	})
}

// TestTrackerSwitching: a request asking to switch protocols is tracked
// until done, and Wait cancels its context when time is up; any other
// request is not tracked.
func TestTrackerSwitching(t *testing.T) {
	var tr Tracker
	plain := httptest.NewRequest("GET", "/", nil)
	r, done := tr.Switching(plain)
	if r != plain {
		t.Fatal("a request without Upgrade was changed")
	}
	// Not tracked: Wait returns at once, not at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tr.Wait(ctx); err != nil {
		t.Fatalf("Wait = %v with only a plain request", err)
	}
	done()

	up := httptest.NewRequest("GET", "/ws", nil)
	up.Header.Set("Connection", "Upgrade")
	up.Header.Set("Upgrade", "websocket")
	r, done = tr.Switching(up)
	go func() { <-r.Context().Done(); done() }()
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := tr.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v with a switching request running, want the deadline", err)
	}
	if r.Context().Err() == nil {
		t.Fatal("the switching request's context was not cancelled")
	}
}
