package logtest

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestBufferConcurrent: lines written by many goroutines are all kept whole,
// and reading while they write is safe (run with -race).
func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				log.Info("line", "g", i, "n", j)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for i := range 8 {
		if n := strings.Count(b.String(), fmt.Sprintf("g=%d ", i)); n != 50 {
			t.Errorf("goroutine %d: %d lines, want 50", i, n)
		}
	}
}
