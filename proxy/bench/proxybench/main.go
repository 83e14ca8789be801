package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/internal/testcp"
)

// Listening ports stay below 32768, out of Linux's default range for
// outgoing connections' local ports: the idle-connection cells and opaque
// paths open thousands of connections, one of which could otherwise hold a
// peer's port when it starts.
const (
	backendHTTP = "127.0.0.1:18080"
	backendGRPC = "127.0.0.1:18079"
	sinkAddr    = "127.0.0.1:18090"
	clientOut   = "127.0.0.1:14140"
	serverIn    = "127.0.0.1:24143"
	// Original destinations the client proxy is given: a Service it routes
	// as HTTP (or gRPC), and an opaque-port one it relays as bytes.
	serviceDst = "10.96.0.10:8079"
	opaqueDst  = "10.96.0.20:5201"
	nginxHTTP  = "127.0.0.1:28080"
	nginxGRPC  = "127.0.0.1:28079"
	haHTTP     = "127.0.0.1:29080"
	haGRPC     = "127.0.0.1:29079"

	clientID = "client.bench.serviceaccount.identity.conduit.cluster.local"
	serverID = "server.bench.serviceaccount.identity.conduit.cluster.local"
)

var (
	proxyBin  = flag.String("proxy", "bin/proxy", "proxy binary")
	fortioBin = flag.String("fortio", "fortio", "fortio binary")
	nginxBin  = flag.String("nginx", "/usr/sbin/nginx", "nginx binary (empty: skip)")
	haBin     = flag.String("haproxy", "/usr/sbin/haproxy", "haproxy binary (empty: skip)")
	duration  = flag.Duration("d", 10*time.Second, "duration of each load cell")
	rates     = flag.String("rates", "1000,5000", "request rates")
	warmup    = flag.Duration("warmup", time.Second, "load at the cell's rate before each measured cell (0: none)")
	tcpDur    = flag.Duration("tcp", 5*time.Second, "duration of each opaque throughput run")
	verbose   = flag.Bool("v", false, "log progress to stderr")
	only      = flag.String("only", "", "run only paths whose name contains one of these, comma-separated (direct, conduit, nginx, haproxy, x2, tcp)")
	protos    = flag.String("protos", "http1,grpc", "protocols to load")
	uniform   = flag.Bool("uniform", true, "spread fortio's connections evenly over each request interval (fortio -uniform); false starts them in step, so requests arrive in bursts of one per connection")
	idleConns = flag.Int("idle-conns", 1000, "after the HTTP/1.1 cells of each proxied path, open this many idle keep-alive connections through it and report RSS per connection (0: skip)")
	repeat    = flag.Int("repeat", 1, "run every cell this many times, in rounds (each round loads every path once), and print each figure's median")
	proxyEnv  = flag.String("proxy-env", "", "extra environment for the Conduit proxies, comma-separated (e.g. GOGC=200,GOMAXPROCS=1)")
)

func logf(format string, a ...any) {
	if *verbose {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
	}
}

func main() {
	flag.Parse()
	// Children run in the temporary directory: make paths absolute.
	for _, p := range []*string{proxyBin, fortioBin} {
		if strings.Contains(*p, "/") {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

// proc is a started child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	pids func() []int // processes to account (nginx: master + workers)
}

func start(name string, env []string, args ...string) (*proc, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = os.TempDir() // fortio server writes its data directory here
	if *verbose {
		cmd.Stderr = os.Stderr
	}
	// Pdeathsig: a proxybench that is killed takes its children with it,
	// else they keep the fixed ports and the next run measures them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd}
	p.pids = func() []int { return append([]int{cmd.Process.Pid}, children(cmd.Process.Pid)...) }
	return p, nil
}

func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// cpuTicks returns utime+stime of the processes in clock ticks (100 Hz).
func cpuTicks(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		s = s[strings.LastIndexByte(s, ')')+2:]
		f := strings.Fields(s)
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += u + st
	}
	return total
}

// cpuEach returns cpuTicks of each of procs.
func cpuEach(procs []*proc) []int64 {
	out := make([]int64, len(procs))
	for i, p := range procs {
		out[i] = cpuTicks(p.pids())
	}
	return out
}

// stopAll stops procs.
func stopAll(procs []*proc) {
	for _, p := range procs {
		p.stop()
	}
}

func rssKB(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				total += n
			}
		}
	}
	return total
}

func waitTCP(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not come up", addr)
}

func waitReady(admin string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("proxy at %s never became ready", admin)
}

// conduit starts a client and a server proxy; the server's inbound forwards
// to target and the client's original destination is origDst.
func conduit(cp *testcp.CP, target, origDst string, extra ...string) (client, server *proc, err error) {
	common := []string{
		"CONDUIT_PROXY_LOG_LEVEL=warn",
		"CONDUIT_PROXY_DESTINATION_ADDR=" + cp.DestAddr,
		"CONDUIT_PROXY_DESTINATION_NAME=" + testcp.DestinationName,
		`CONDUIT_PROXY_DESTINATION_CONTEXT={"ns":"bench","pod":"p"}`,
		"CONDUIT_PROXY_IDENTITY_ADDR=" + cp.IdentityAddr,
		"CONDUIT_PROXY_IDENTITY_SERVER_NAME=" + testcp.IdentityName,
		"CONDUIT_PROXY_IDENTITY_TOKEN_FILE=" + cp.TokenFile,
		"CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS=" + string(cp.AnchorsPEM),
		"CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD=5s",
		// The Service's address and the loopback peers, looked up as in a
		// cluster.
		"CONDUIT_PROXY_CLUSTER_NETWORKS=10.0.0.0/8,127.0.0.0/8,::1/128",
		// As injected into a pod without a proxy CPU limit (the default).
		"GOMAXPROCS=1",
		"CONDUIT_PROXY_DEBUG_PPROF=" + os.Getenv("CONDUIT_PROXY_DEBUG_PPROF"),
	}
	common = append(common, extra...)
	if *proxyEnv != "" {
		common = append(common, strings.Split(*proxyEnv, ",")...)
	}
	server, err = start("conduit-server", append(common,
		"CONDUIT_PROXY_IDENTITY_NAME="+serverID,
		"CONDUIT_PROXY_INBOUND_LISTEN_ADDR="+serverIn,
		"CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:24140",
		"CONDUIT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:24191",
		"CONDUIT_PROXY_INBOUND_TARGET_OVERRIDE="+target,
	), *proxyBin)
	if err != nil {
		return nil, nil, err
	}
	client, err = start("conduit-client", append(common,
		"CONDUIT_PROXY_IDENTITY_NAME="+clientID,
		"CONDUIT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:14143",
		"CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR="+clientOut,
		"CONDUIT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:14191",
		"CONDUIT_PROXY_OUTBOUND_ORIG_DST_OVERRIDE="+origDst,
	), *proxyBin)
	if err != nil {
		server.stop()
		return nil, nil, err
	}
	if err = waitReady("127.0.0.1:24191"); err == nil {
		err = waitReady("127.0.0.1:14191")
	}
	if err != nil {
		client.stop()
		server.stop()
		return nil, nil, err
	}
	return client, server, nil
}

type fortioResult struct {
	ActualQPS         float64
	DurationHistogram struct {
		Count       int64
		Max         float64
		Percentiles []struct {
			Percentile float64
			Value      float64
		}
	}
	RetCodes map[string]int64
}

type cell struct {
	mode, proto         string
	rps                 int
	p50, p99, p999, max float64 // ms
	ok, total           int64
	cpu                 []float64 // CPU seconds per 1,000 requests, per proxy
	rssIdle             []int64   // KiB per proxy
	rssLoad             []int64
	idleConns           int // > 0: an idle-connection cell (see idleCell); rssIdle is before them, rssLoad with them
	rounds              int // how many rounds' cells medianCells merged into this one
}

// load runs fortio and samples the proxies while it runs.
func load(mode, proto string, rps int, target string, host string, procs []*proc, idle []int64) (cell, error) {
	c := cell{mode: mode, proto: proto, rps: rps, rssIdle: idle}
	out := filepath.Join(os.TempDir(), fmt.Sprintf("fortio-%d.json", time.Now().UnixNano()))
	defer os.Remove(out)
	conns := max(8, rps/150)
	fortio := func(d time.Duration) []string {
		args := []string{*fortioBin, "load", "-quiet", "-qps", strconv.Itoa(rps), "-t", d.String(), "-c", strconv.Itoa(conns),
			"-r", "0.00001", "-p", "50,99,99.9", "-payload-size", "1024", "-json", out, "-allow-initial-errors"}
		if *uniform {
			args = append(args, "-uniform")
		}
		if proto == "grpc" {
			return append(args, "-grpc", "-ping", target)
		}
		if host != "" {
			args = append(args, "-H", "Host: "+host)
		}
		return append(args, "http://"+target+"/echo")
	}
	// Warm up (connections, TLS sessions, discovery, pools) at the same
	// rate before measuring, so the cell shows the steady state.
	if *warmup > 0 {
		w := fortio(*warmup)
		if msg, err := exec.Command(w[0], w[1:]...).CombinedOutput(); err != nil {
			return c, fmt.Errorf("fortio warm-up %v: %w: %s", w, err, msg)
		}
	}
	args := fortio(*duration)
	before := cpuEach(procs)
	peak := make([]int64, len(procs))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				for i, p := range procs {
					peak[i] = max(peak[i], rssKB(p.pids()))
				}
			}
		}
	}()
	cmd := exec.Command(args[0], args[1:]...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		close(stop)
		wg.Wait()
		return c, fmt.Errorf("fortio %v: %w: %s", args, err, msg)
	}
	close(stop)
	wg.Wait()
	var r fortioResult
	b, err := os.ReadFile(out)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return c, err
	}
	for _, p := range r.DurationHistogram.Percentiles {
		switch p.Percentile {
		case 50:
			c.p50 = p.Value * 1000
		case 99:
			c.p99 = p.Value * 1000
		case 99.9:
			c.p999 = p.Value * 1000
		}
	}
	c.max = r.DurationHistogram.Max * 1000
	c.total = r.DurationHistogram.Count
	c.ok = r.RetCodes["200"] + r.RetCodes["SERVING"]
	for i, p := range procs {
		ticks := cpuTicks(p.pids()) - before[i]
		c.cpu = append(c.cpu, float64(ticks)/100/(float64(c.total)/1000))
		c.rssLoad = append(c.rssLoad, peak[i])
	}
	logf("%s %s %d: p50 %.3f p99 %.3f max %.3f ok %d/%d cpu %v rss %v", mode, proto, rps, c.p50, c.p99, c.max, c.ok, c.total, c.cpu, c.rssLoad)
	return c, nil
}

func idleRSS(procs []*proc) []int64 {
	time.Sleep(time.Second)
	var out []int64
	for _, p := range procs {
		out = append(out, rssKB(p.pids()))
	}
	return out
}

func parseRates() []int {
	var out []int
	for _, s := range strings.Split(*rates, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func run() error {
	dir, err := os.MkdirTemp("", "proxybench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cp, err := testcp.New(dir)
	if err != nil {
		return err
	}
	defer cp.Stop()
	cp.SetEndpoints("web.bench.svc.cluster.local:80", testcp.Meshed(serverIn, serverID, false))
	cp.SetProfile(serviceDst, &destinationv1.DestinationProfile{FullyQualifiedName: "grpc.bench.svc.cluster.local"})
	cp.SetEndpoints("grpc.bench.svc.cluster.local:8079", testcp.Meshed(serverIn, serverID, false))
	cp.SetProfile(opaqueDst, &destinationv1.DestinationProfile{OpaqueProtocol: true, Endpoint: testcp.Meshed(serverIn, serverID, true)})

	backend, err := start("fortio-server", nil, *fortioBin, "server", "-quiet", "-http-port", backendHTTP, "-grpc-port", backendGRPC, "-redirect-port", "disabled", "-tcp-port", "disabled", "-udp-port", "disabled")
	if err != nil {
		return err
	}
	defer backend.stop()
	if err := waitTCP(backendHTTP); err != nil {
		return err
	}
	if err := waitTCP(backendGRPC); err != nil {
		return err
	}

	var cells []cell
	var pki *chainPKI
	rs := parseRates()
	want := func(mode string) bool {
		if *only == "" {
			return true
		}
		for _, o := range strings.Split(*only, ",") {
			if o != "" && strings.Contains(mode, o) {
				return true
			}
		}
		return false
	}
	for round := 0; round < *repeat; round++ {
		for _, proto := range strings.Split(*protos, ",") {
			target := backendHTTP
			if proto == "grpc" {
				target = backendGRPC
			}
			// Direct.
			for _, rps := range rs {
				if !want("direct") {
					break
				}
				c, err := load("direct", proto, rps, target, "", nil, nil)
				if err != nil {
					return err
				}
				cells = append(cells, c)
			}
			// Conduit: fresh proxies per protocol and per way HTTP/1 travels
			// between them (over HTTP/2, the default, or as pooled HTTP/1.1).
			for _, v := range conduitVariants(proto) {
				if !want(v.name) {
					continue
				}
				cs, err := runConduit(cp, v.name, proto, target, v.origDst, rs, v.env...)
				if err != nil {
					return err
				}
				cells = append(cells, cs...)
			}
			// nginx and haproxy: one plaintext hop each, then two of them with
			// mutual TLS between, the same shape as the mesh.
			grpc := proto == "grpc"
			for _, rp := range []struct {
				name  string
				bin   string
				start func() ([]*proc, error)
				addr  string
			}{
				{"nginx", *nginxBin, func() ([]*proc, error) { return one(startNginx(dir)) }, pick(grpc, nginxGRPC, nginxHTTP)},
				{"haproxy", *haBin, func() ([]*proc, error) { return one(startHAProxy(dir)) }, pick(grpc, haGRPC, haHTTP)},
				{"nginx x2 (mTLS)", *nginxBin, func() ([]*proc, error) { return withPKI(&pki, dir, startNginx2) }, pick(grpc, nginx2GRPC, nginx2HTTP)},
				{"haproxy x2 (mTLS)", *haBin, func() ([]*proc, error) { return withPKI(&pki, dir, startHAProxy2) }, pick(grpc, ha2GRPC, ha2HTTP)},
			} {
				if rp.bin == "" || !want(rp.name) {
					continue
				}
				procs, err := rp.start()
				if err != nil {
					return err
				}
				cs, err := loadPeer(rp.name, proto, rp.addr, "", rs, procs)
				if err != nil {
					return err
				}
				cells = append(cells, cs...)
			}
		}
	}
	cells = medianCells(cells)

	printTable(cells)
	if !want("tcp") {
		return nil
	}
	setPlainProfile(cp)
	tcp, err := runTCP(tcpPaths(cp, dir, &pki))
	if err != nil {
		return err
	}
	printTCP(tcp)
	return nil
}

type variant struct {
	name    string
	env     []string
	origDst string // the client proxy's original destination; empty: serviceDst
}

// conduitVariants are the Conduit configurations loaded with proto.
func conduitVariants(proto string) []variant {
	vs := []variant{{name: "conduit (2 proxies, mTLS)"},
		{name: "conduit (2 proxies, mTLS, net/http h2)", env: []string{"CONDUIT_PROXY_HTTP2_FAST_PATH=false"}}}
	if proto == "http1" {
		vs[0].name = "conduit (2 proxies, mTLS, HTTP/1 over h2)"
		vs[1].name = "conduit (2 proxies, mTLS, HTTP/1 over net/http h2)"
		vs = append(vs, variant{name: "conduit (2 proxies, mTLS, HTTP/1.1 between)", env: []string{"CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT=http1"}})
	}
	// The same requests through an opaque-port Service: the proxies relay
	// bytes over mTLS without parsing HTTP, the floor for any proxy here
	// that does the same hops with TLS.
	vs = append(vs, variant{name: "conduit (2 proxies, mTLS, opaque)", origDst: opaqueDst})
	return vs
}

func runConduit(cp *testcp.CP, mode, proto, target, origDst string, rs []int, env ...string) ([]cell, error) {
	if origDst == "" {
		origDst = serviceDst
	}
	client, server, err := conduit(cp, target, origDst, env...)
	if err != nil {
		return nil, err
	}
	return loadPeer(mode, proto, clientOut, "web.bench.svc.cluster.local", rs, []*proc{client, server})
}

func pick(grpc bool, grpcAddr, httpAddr string) string {
	if grpc {
		return grpcAddr
	}
	return httpAddr
}

func one(p *proc, err error) ([]*proc, error) {
	if err != nil {
		return nil, err
	}
	return []*proc{p}, nil
}

// withPKI starts a two-hop peer, making the certificates on first use.
func withPKI(p **chainPKI, dir string, start func(dir string, pki *chainPKI) (client, server *proc, err error)) ([]*proc, error) {
	if *p == nil {
		var err error
		if *p, err = newChainPKI(dir); err != nil {
			return nil, err
		}
	}
	client, server, err := start(dir, *p)
	if err != nil {
		return nil, err
	}
	return []*proc{client, server}, nil
}

// loadPeer loads a started peer listening on addr at each rate (with the
// Host header host, if any), then stops its processes.
func loadPeer(name, proto, addr, host string, rs []int, procs []*proc) ([]cell, error) {
	defer stopAll(procs)
	if err := waitTCP(addr); err != nil {
		return nil, err
	}
	idle := idleRSS(procs)
	var cells []cell
	for _, rps := range rs {
		c, err := load(name, proto, rps, addr, host, procs, idle)
		if err != nil {
			return nil, err
		}
		cells = append(cells, c)
	}
	if proto == "http1" && *idleConns > 0 {
		c, err := idleCell(name, addr, host, *idleConns, 3*time.Second, procs)
		if err != nil {
			return nil, err
		}
		cells = append(cells, c)
	}
	return cells, nil
}

func startNginx(dir string) (*proc, error) {
	return startNginxConf("nginx", filepath.Join(dir, "nginx"), fmt.Sprintf(`
  upstream be { server %[1]s; keepalive 128; }
  upstream grpcbe { server %[2]s; keepalive 128; }
  server {
    listen %[3]s;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
  server {
    listen %[4]s http2;
    location / { grpc_pass grpc://grpcbe; }
  }`, backendHTTP, backendGRPC, nginxHTTP, nginxGRPC))
}

func startHAProxy(dir string) (*proc, error) {
	return startHAProxyConf("haproxy", dir, fmt.Sprintf(`frontend fh
  bind %s
  default_backend bh
backend bh
  http-reuse always
  server s1 %s
frontend fg
  bind %s proto h2
  default_backend bg
backend bg
  server s1 %s proto h2
`, haHTTP, backendHTTP, haGRPC, backendGRPC))
}

// startHAProxyConf starts haproxy (one thread, TLS 1.3 where TLS is
// configured) with the proxies of body, its configuration written to
// dir/name.cfg.
func startHAProxyConf(name, dir, body string) (*proc, error) {
	conf := `global
  nbthread 1
  maxconn 4000
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
` + body
	path := filepath.Join(dir, name+".cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return start(name, nil, *haBin, "-db", "-f", path)
}

func ms(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

func join[T any](vs []T, f func(T) string) string {
	if len(vs) == 0 {
		return "–"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = f(v)
	}
	return strings.Join(s, " / ")
}

func printTable(cells []cell) {
	if len(cells) == 0 {
		return
	}
	base := map[string]cell{}
	for _, c := range cells {
		if c.mode == "direct" {
			base[c.proto+strconv.Itoa(c.rps)] = c
		}
	}
	fmt.Print(roundsNote(cells))
	fmt.Println("| path | proto | rps | ok/total | p50 ms | p99 ms | p99.9 ms | max ms | added p50 ms | added p99 ms | CPU s per 1k req (per proxy) | RSS idle MiB | RSS load MiB |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range cells {
		if c.idleConns > 0 {
			continue
		}
		b := base[c.proto+strconv.Itoa(c.rps)]
		added50, added99 := "–", "–"
		if c.mode != "direct" {
			added50, added99 = ms(c.p50-b.p50), ms(c.p99-b.p99)
		}
		mib := func(kb int64) string { return strconv.FormatFloat(float64(kb)/1024, 'f', 1, 64) }
		fmt.Printf("| %s | %s | %d | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.mode, c.proto, c.rps, c.ok, c.total, ms(c.p50), ms(c.p99), ms(c.p999), ms(c.max), added50, added99,
			join(c.cpu, func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }),
			join(c.rssIdle, mib), join(c.rssLoad, mib))
	}
	printIdle(cells)
}
