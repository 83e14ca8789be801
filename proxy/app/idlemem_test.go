package app_test

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"testing"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
	"github.com/conduit-mesh/conduit/proxy/internal/testcp"
)

// TestIdleOpaqueMemory measures what an idle opaque connection costs the
// two proxies: N connections through a client and a server proxy (mTLS
// between them), one message exchanged on each, then left idle. The heap
// and goroutine stacks in use after a forced GC, minus the same N
// connections made directly to the application (the test's own client and
// server), divided by N, are logged for both proxies together. The bounds
// are generous: they catch a return of per-connection buffers held while
// waiting, or of large stacks, not a few KiB.
// CONDUIT_IDLE_HEAP_PROFILE=file writes the heap profile with the
// connections open.
func TestIdleOpaqueMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	const n = 500
	app := echoOnce(t)
	m := newMesh(t)
	client, _ := m.opaquePair(t, app, "10.9.9.12:5432")

	open := func(addr string) []net.Conn {
		conns := make([]net.Conn, 0, n)
		msg := make([]byte, 1024)
		got := make([]byte, len(msg))
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Time{})
		}
		return conns
	}
	closeAll := func(conns []net.Conn) {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	// settle forces a GC (FreeOSMemory) and reads the memory stats.
	// Stacks shrink by half at most per GC: gcs cycles stand for a proxy
	// that stayed idle for a while.
	settle := func(gcs int) runtime.MemStats {
		time.Sleep(200 * time.Millisecond)
		for range gcs - 1 {
			runtime.GC()
		}
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms
	}
	// Warm up both paths (session tickets, pools, the profile).
	closeAll(open(client.OutboundAddr().String())[:])
	base := settle(4)
	direct := open(app)
	withDirect := settle(4)
	closeAll(direct)
	base2 := settle(4)
	proxied := open(client.OutboundAddr().String())
	time.Sleep(200 * time.Millisecond)
	var noGC runtime.MemStats // stacks only shrink at a GC: as a proxy idle since would keep them
	runtime.ReadMemStats(&noGC)
	firstGC := settle(1)
	withProxied := settle(3)
	if f := os.Getenv("CONDUIT_IDLE_HEAP_PROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		_ = pprof.WriteHeapProfile(out)
		_ = out.Close()
	}
	perConn := func(after, before uint64) float64 { return (float64(after) - float64(before)) / n / 1024 }
	dHeap, dStack := perConn(withDirect.HeapInuse, base.HeapInuse), perConn(withDirect.StackInuse, base.StackInuse)
	pHeap, pStack := perConn(withProxied.HeapInuse, base2.HeapInuse), perConn(withProxied.StackInuse, base2.StackInuse)
	heap, stack := pHeap-dHeap, pStack-dStack
	t.Logf("per idle opaque connection, both proxies: heap %.1f KiB, stacks %.1f KiB (through them %.1f + %.1f, direct %.1f + %.1f); goroutines %d",
		heap, stack, pHeap, pStack, dHeap, dStack, runtime.NumGoroutine())
	t.Logf("after the first GC only: heap %.1f KiB, stacks %.1f KiB; before any GC: stacks %.1f KiB",
		perConn(firstGC.HeapInuse, base2.HeapInuse)-dHeap, perConn(firstGC.StackInuse, base2.StackInuse)-dStack,
		perConn(noGC.StackInuse, base2.StackInuse)-dStack)
	closeAll(proxied)
	// About 31 KiB of heap (crypto/tls's buffers and ciphers for the
	// connection between the proxies, the sockets) and 22 KiB of stacks
	// (48 with -race); 48 KiB of heap when each copy kept a 4 KiB buffer
	// while waiting.
	if heap > 40 {
		t.Errorf("an idle opaque connection costs the proxies %.1f KiB of heap, want at most 40", heap)
	}
	if heap+stack > 160 {
		t.Errorf("an idle opaque connection costs the proxies %.1f KiB of heap and stacks, want at most 160", heap+stack)
	}
}

// BenchmarkTwoHopsOpaqueEcho: 1 KiB messages echoed one at a time over
// one opaque connection through two proxies, each copy pausing between
// them (the path a waiting copy takes: see netx.copyBuffered), where
// BenchmarkTwoHopsOpaque streams.
func BenchmarkTwoHopsOpaqueEcho(b *testing.B) {
	cp, err := testcp.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cp.Stop)
	srv := benchProxy(b, cp, benchServerID, echoOnce(b), "127.0.0.1:1")
	cp.SetProfile("10.96.0.21:5432", &destinationv1.DestinationProfile{OpaqueProtocol: true,
		Endpoint: testcp.Meshed(srv.InboundAddr().String(), benchServerID, true)})
	addr := benchProxy(b, cp, benchClientID, "127.0.0.1:1", "10.96.0.21:5432").OutboundAddr().String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("z"), benchBodySize)
	got := make([]byte, len(msg))
	echo := func() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
	for range 200 {
		echo()
	}
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	cpu.reset()
	for range b.N {
		echo()
	}
	b.StopTimer()
	cpu.report(b)
}

// echoOnce is a TCP server that echoes what it reads, on each connection
// until it ends.
func echoOnce(t testing.TB) string {
	t.Helper()
	return servetest.TCP(t, func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(c, c)
	}).String()
}
