package h2

import (
	"runtime"
	"testing"
)

var sinkServer *serverStream
var sinkClient *clientStream

// allocBytes is what one call of f allocates, on average over 1,000.
func allocBytes(f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var before, after runtime.MemStats
	f()
	runtime.ReadMemStats(&before)
	for range 1000 {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / 1000
}

// TestStreamSizeClasses: a stream is allocated per request on each end,
// and the header values kept in it (respVals, reqVals) fill what its size
// class leaves: a field more must not push it into the next class (a
// server stream over 1,016 bytes takes 1,152, as the allocator adds an
// 8-byte header to objects over 512 bytes with pointers).
func TestStreamSizeClasses(t *testing.T) {
	if n := allocBytes(func() { sinkServer = &serverStream{} }); n > 1024 {
		t.Errorf("a server stream takes %d bytes, want its class of 1,024", n)
	}
	if n := allocBytes(func() { sinkClient = &clientStream{} }); n > 480 {
		t.Errorf("a client stream takes %d bytes, want its class of 480", n)
	}
}
