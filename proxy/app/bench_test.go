package app_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/app"
	"github.com/conduit-mesh/conduit/proxy/config"
	"github.com/conduit-mesh/conduit/proxy/inbound"
	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
	"github.com/conduit-mesh/conduit/proxy/internal/testcp"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// End-to-end benchmarks of the data path: a client in this process talks to a
// server in this process, directly (the baseline) or through two proxies
// (client → outbound → mTLS HTTP/2 → inbound → server), all on loopback.
// Besides ns/op they report cpu-ns/op, the process CPU time (user + system,
// from getrusage) per operation: with the baseline subtracted it is what the
// two proxies cost per request.
//
//	go test -run '^$' -bench TwoHops -benchmem ./proxy/app

const (
	benchClientID = "client.bench.serviceaccount.identity.conduit.cluster.local"
	benchServerID = "server.bench.serviceaccount.identity.conduit.cluster.local"
	benchBodySize = 1024
	opaqueChunk   = 64 << 10
)

// benchMesh is a control plane and two proxies in front of an HTTP server
// and a TCP sink.
type benchMesh struct {
	httpAddr string // the application (HTTP/1.1 and h2c)
	sinkAddr string // opaque TCP sink
	outbound string // client proxy's outbound listener (HTTP)
	opaqueOb string // client proxy's outbound listener (opaque)
}

func startBenchMesh(b *testing.B, proxies bool, clientEnv ...string) *benchMesh {
	b.Helper()
	m := &benchMesh{httpAddr: startEchoServer(b), sinkAddr: startSink(b)}
	if !proxies {
		return m
	}
	cp, err := testcp.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cp.Stop)
	httpSrv := benchProxy(b, cp, benchServerID, m.httpAddr, "127.0.0.1:1")
	sinkSrv := benchProxy(b, cp, benchServerID, m.sinkAddr, "127.0.0.1:1")
	cp.SetEndpoints("web.bench.svc.cluster.local:80", testcp.Meshed(httpSrv.InboundAddr().String(), benchServerID, false))
	cp.SetProfile("10.96.0.20:5201", &destinationv1.DestinationProfile{OpaqueProtocol: true,
		Endpoint: testcp.Meshed(sinkSrv.InboundAddr().String(), benchServerID, true)})
	m.outbound = benchProxy(b, cp, benchClientID, "127.0.0.1:1", "10.96.0.10:80", clientEnv...).OutboundAddr().String()
	m.opaqueOb = benchProxy(b, cp, benchClientID, "127.0.0.1:1", "10.96.0.20:5201").OutboundAddr().String()
	return m
}

// benchProxy starts a proxy; extra holds more of its environment as
// name=value pairs.
func benchProxy(b *testing.B, cp *testcp.CP, id, inTarget, outDst string, extra ...string) *app.Proxy {
	b.Helper()
	env := map[string]string{
		"CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR":   "127.0.0.1:0",
		"CONDUIT_PROXY_INBOUND_LISTEN_ADDR":    "127.0.0.1:0",
		"CONDUIT_PROXY_ADMIN_LISTEN_ADDR":      "127.0.0.1:0",
		"CONDUIT_PROXY_DESTINATION_ADDR":       cp.DestAddr,
		"CONDUIT_PROXY_DESTINATION_NAME":       testcp.DestinationName,
		"CONDUIT_PROXY_DESTINATION_CONTEXT":    `{"ns":"bench","pod":"p"}`,
		"CONDUIT_PROXY_IDENTITY_ADDR":          cp.IdentityAddr,
		"CONDUIT_PROXY_IDENTITY_SERVER_NAME":   testcp.IdentityName,
		"CONDUIT_PROXY_IDENTITY_NAME":          id,
		"CONDUIT_PROXY_IDENTITY_TOKEN_FILE":    cp.TokenFile,
		"CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS": string(cp.AnchorsPEM),
		"CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD":  "1s",
		"CONDUIT_PROXY_CLUSTER_NETWORKS":       loopbackNetworks,
	}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := app.Start(ctx, cfg, slog.New(slog.DiscardHandler), app.Overrides{
		InboundOrigDst: origdst.Static(netip.MustParseAddrPort(inTarget)), OutboundOrigDst: origdst.Static(netip.MustParseAddrPort(outDst))})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.Wait(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case <-p.Identity.Ready():
	case <-time.After(10 * time.Second):
		b.Fatalf("proxy %s got no certificate", id)
	}
	return p
}

// startEchoServer serves HTTP/1.1 and h2c, echoing the request body.
func startEchoServer(b *testing.B) string {
	b.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, benchBodySize)
		n, _ := io.ReadFull(r.Body, buf)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(buf[:n])
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// startSink reads a connection to its end, then writes the byte count (8
// bytes, big endian) and closes.
func startSink(b *testing.B) string {
	b.Helper()
	return servetest.TCP(b, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, opaqueChunk)
		var n int64
		for {
			m, err := c.Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		_ = binary.Write(c, binary.BigEndian, uint64(n))
	}).String()
}

// cpuMeter measures the process's CPU time.
type cpuMeter struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuMeter) reset() { c.start = cpuNow() }

func (c *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(cpuNow()-c.start)/float64(b.N), "cpu-ns/op")
}

func dialClient(addr string, h2 bool) *http.Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if h2 {
		return &http.Client{Transport: inbound.H2CTransport(dial)}
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableCompression: true, MaxIdleConnsPerHost: 4}}
}

// benchHTTP sends b.N sequential 1 KiB POSTs (echoed) on one keep-alive
// connection.
func benchHTTP(b *testing.B, addr, url string, h2 bool) {
	client := dialClient(addr, h2)
	defer client.CloseIdleConnections()
	payload := bytes.Repeat([]byte("x"), benchBodySize)
	rd := bytes.NewReader(payload)
	buf := make([]byte, 2*benchBodySize)
	do := func() {
		rd.Reset(payload)
		req, err := http.NewRequest(http.MethodPost, url, rd)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.ReadFull(resp.Body, buf)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != benchBodySize {
			b.Fatalf("status %d, %d bytes (%s)", resp.StatusCode, n, resp.Header.Get("conduit-proxy-error"))
		}
	}
	for range 200 { // warm up: connections, discovery, TLS
		do()
	}
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	cpu.reset()
	for range b.N {
		do()
	}
	b.StopTimer()
	cpu.report(b)
}

// benchOpaque streams b.N chunks of 64 KiB over one connection and waits
// for the sink's count.
func benchOpaque(b *testing.B, addr string) {
	chunk := bytes.Repeat([]byte("y"), opaqueChunk)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for range 16 { // warm up through both proxies
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	var cpu cpuMeter
	b.SetBytes(opaqueChunk)
	b.ReportAllocs()
	b.ResetTimer()
	cpu.reset()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	var got uint64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu.report(b)
	if want := uint64(b.N+16) * opaqueChunk; got != want {
		b.Fatalf("sink got %d bytes, want %d", got, want)
	}
}

func BenchmarkDirectHTTP1(b *testing.B) {
	m := startBenchMesh(b, false)
	benchHTTP(b, m.httpAddr, "http://web.bench/echo", false)
}

func BenchmarkTwoHopsHTTP1(b *testing.B) {
	m := startBenchMesh(b, true)
	benchHTTP(b, m.outbound, "http://web.bench/echo", false)
}

// BenchmarkTwoHopsHTTP1Between carries the requests between the proxies
// as HTTP/1.1 instead of over HTTP/2.
func BenchmarkTwoHopsHTTP1Between(b *testing.B) {
	m := startBenchMesh(b, true, "CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT=http1")
	benchHTTP(b, m.outbound, "http://web.bench/echo", false)
}

func BenchmarkDirectH2(b *testing.B) {
	m := startBenchMesh(b, false)
	benchHTTP(b, m.httpAddr, "http://web.bench/echo", true)
}

func BenchmarkTwoHopsH2(b *testing.B) {
	m := startBenchMesh(b, true)
	benchHTTP(b, m.outbound, "http://web.bench/echo", true)
}

func BenchmarkDirectOpaque(b *testing.B) {
	m := startBenchMesh(b, false)
	benchOpaque(b, m.sinkAddr)
}

func BenchmarkTwoHopsOpaque(b *testing.B) {
	m := startBenchMesh(b, true)
	benchOpaque(b, m.opaqueOb)
}

// TestBenchMesh keeps the benchmarks' setup from rotting: one request of
// each kind through both proxies.
func TestBenchMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and four proxies")
	}
	res := testing.Benchmark(func(b *testing.B) {
		m := startBenchMesh(b, true)
		benchHTTP(b, m.outbound, "http://web.bench/echo", false)
	})
	if res.N == 0 {
		t.Fatal("benchmark through two proxies failed")
	}
}
