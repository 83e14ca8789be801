package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/internal/testcp"
)

// Opaque TCP throughput: one connection writing as fast as it can into a
// sink, directly and through each two-hop path. Besides Conduit with mTLS
// (what meshed pods get), the runs show what the same two hops cost without
// TLS (Conduit relaying plaintext, which it splices), and what two hops of
// nginx or haproxy with mutual TLS 1.3 reach on the same machine, so the
// ratio to direct can be read against the machine rather than alone.
const (
	// plainDst is an opaque-port Service whose endpoint has no identity:
	// the client proxy connects in plaintext, and both proxies splice.
	plainDst = "10.96.0.21:5201"

	nginxTCP  = "127.0.0.1:28190" // client-side nginx stream, plaintext in
	nginxTCPS = "127.0.0.1:28290" // server-side nginx stream, mTLS in
	haTCP     = "127.0.0.1:29190"
	haTCPS    = "127.0.0.1:29290"

	// tlsSuite is the TLS 1.3 cipher suite the peers are held to: the one
	// Go's crypto/tls prefers on a CPU with AES instructions, which the
	// Conduit proxies negotiate. OpenSSL's first choice, AES-256-GCM,
	// costs more per byte and would measure the cipher, not the proxy.
	tlsSuite = "TLS_AES_128_GCM_SHA256"

	nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"
)

// tcpPath is one path of the throughput runs; start is nil for direct.
type tcpPath struct {
	name  string
	addr  string
	start func() ([]*proc, error)
	// wait lists the listeners to wait for after start, the server side
	// first: a connection the client side relays before the server side
	// listens is reset (nginx) or retried a second later (haproxy).
	wait []string
}

// tcpResult is a path's medians over the rounds.
type tcpResult struct {
	name string
	mbps float64
	cpu  []float64 // CPU seconds per GB moved, per proxy
}

// setPlainProfile registers plainDst with the test control plane.
func setPlainProfile(cp *testcp.CP) {
	cp.SetProfile(plainDst, &destinationv1.DestinationProfile{OpaqueProtocol: true, Endpoint: testcp.Plain(serverIn)})
}

// tcpPaths lists the throughput paths; pki is made on first use.
func tcpPaths(cp *testcp.CP, dir string, pki **chainPKI) []tcpPath {
	paths := []tcpPath{
		{name: "direct", addr: sinkAddr},
		{name: "conduit (2 proxies, mTLS)", addr: clientOut, start: func() ([]*proc, error) {
			c, s, err := conduit(cp, sinkAddr, opaqueDst)
			return []*proc{c, s}, err
		}},
		{name: "conduit (2 proxies, plaintext, spliced)", addr: clientOut, start: func() ([]*proc, error) {
			c, s, err := conduit(cp, sinkAddr, plainDst)
			return []*proc{c, s}, err
		}},
	}
	if *nginxBin != "" {
		if _, err := os.Stat(nginxStreamModule); err == nil {
			paths = append(paths, tcpPath{name: "nginx x2 (mTLS, stream)", addr: nginxTCP, start: func() ([]*proc, error) {
				return withPKI(pki, dir, startNginxStream2)
			}, wait: []string{nginxTCPS, nginxTCP}})
		} else {
			logf("proxybench: no %s (Debian's libnginx-mod-stream): the nginx TCP path is skipped", nginxStreamModule)
		}
	}
	if *haBin != "" {
		paths = append(paths, tcpPath{name: "haproxy x2 (mTLS, mode tcp)", addr: haTCP, start: func() ([]*proc, error) {
			return withPKI(pki, dir, startHAProxyTCP2)
		}, wait: []string{haTCPS, haTCP}})
	}
	return paths
}

// runTCP measures every path once per round and returns the medians.
func runTCP(paths []tcpPath) ([]tcpResult, error) {
	sink, err := startSink()
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	mbps := make([][]float64, len(paths))
	cpu := make([][][]float64, len(paths)) // path, round, proxy
	for round := 0; round < *repeat; round++ {
		for i, p := range paths {
			var procs []*proc
			if p.start != nil {
				if procs, err = p.start(); err != nil {
					return nil, fmt.Errorf("%s: %w", p.name, err)
				}
				for _, a := range p.wait {
					if err = waitTCP(a); err != nil {
						stopAll(procs)
						return nil, fmt.Errorf("%s: %w", p.name, err)
					}
				}
			}
			before := cpuEach(procs)
			rate, bytes, err := throughput(p.addr)
			var perGB []float64
			for j, t := range cpuEach(procs) {
				perGB = append(perGB, float64(t-before[j])/100/(float64(bytes)/1e9))
			}
			stopAll(procs)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			logf("tcp %s: %.0f MB/s", p.name, rate)
			mbps[i] = append(mbps[i], rate)
			cpu[i] = append(cpu[i], perGB)
		}
	}
	out := make([]tcpResult, len(paths))
	for i, p := range paths {
		out[i] = tcpResult{name: p.name, mbps: median(mbps[i]), cpu: medianEach(cpu[i])}
	}
	return out, nil
}

// printTCP prints the throughput table; the first result is direct.
func printTCP(rs []tcpResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Println()
	fmt.Printf("Opaque TCP throughput, one connection, %s per run (TLS: %s)\n\n", tcpDur.String(), tlsSuite)
	fmt.Println("| path | MB/s | % of direct | CPU s per GB (per proxy) |")
	fmt.Println("|---|---|---|---|")
	for _, r := range rs {
		fmt.Printf("| %s | %.0f | %.0f %% | %s |\n", r.name, r.mbps, 100*r.mbps/rs[0].mbps,
			join(r.cpu, func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }))
	}
}

// startNginxStream2 starts two nginx with the stream module, mutual TLS 1.3
// between them, relaying bytes to the sink.
func startNginxStream2(dir string, pki *chainPKI) (client, server *proc, err error) {
	server, err = startNginxStream("nginx-tcp-server", filepath.Join(dir, "nginx-tcp-server"), fmt.Sprintf(`
  server {
    listen %[1]s ssl;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites %[2]s;
    ssl_certificate %[3]s;
    ssl_certificate_key %[4]s;
    ssl_client_certificate %[5]s;
    ssl_verify_client on;
    proxy_pass %[6]s;
  }`, nginxTCPS, tlsSuite, pki.serverCert, pki.serverKey, pki.ca, sinkAddr))
	if err != nil {
		return nil, nil, err
	}
	client, err = startNginxStream("nginx-tcp-client", filepath.Join(dir, "nginx-tcp-client"), fmt.Sprintf(`
  server {
    listen %[1]s;
    proxy_pass %[2]s;
    proxy_ssl on;
    proxy_ssl_protocols TLSv1.3;
    proxy_ssl_conf_command Ciphersuites %[3]s;
    proxy_ssl_certificate %[4]s;
    proxy_ssl_certificate_key %[5]s;
    proxy_ssl_trusted_certificate %[6]s;
    proxy_ssl_verify on;
    proxy_ssl_name %[7]s;
  }`, nginxTCP, nginxTCPS, tlsSuite, pki.clientCert, pki.clientKey, pki.ca, chainSrvName))
	if err != nil {
		server.stop()
		return nil, nil, err
	}
	return client, server, nil
}

// startNginxStream starts nginx (one worker, no logs) whose stream block
// holds body.
func startNginxStream(name, d, body string) (*proc, error) {
	path, err := nginxConfig(d, "load_module "+nginxStreamModule+";\n", "stream {\n"+body+"\n}")
	if err != nil {
		return nil, err
	}
	return startNginxAt(name, d, path)
}

// startHAProxyTCP2 starts two haproxy in TCP mode with mutual TLS 1.3
// between them, relaying bytes to the sink.
func startHAProxyTCP2(dir string, pki *chainPKI) (client, server *proc, err error) {
	server, err = startHAProxyConf("haproxy-tcp-server", dir, fmt.Sprintf(`frontend ft
  mode tcp
  bind %[1]s ssl crt %[2]s ca-file %[3]s verify required ciphersuites %[4]s
  default_backend bt
backend bt
  mode tcp
  server s1 %[5]s
`, haTCPS, pki.serverPEM, pki.ca, tlsSuite, sinkAddr))
	if err != nil {
		return nil, nil, err
	}
	client, err = startHAProxyConf("haproxy-tcp-client", dir, fmt.Sprintf(`frontend ft
  mode tcp
  bind %[1]s
  default_backend bt
backend bt
  mode tcp
  server s1 %[2]s ssl crt %[3]s ca-file %[4]s verify required sni str(%[5]s) verifyhost %[5]s ciphersuites %[6]s
`, haTCP, haTCPS, pki.clientPEM, pki.ca, chainSrvName, tlsSuite))
	if err != nil {
		server.stop()
		return nil, nil, err
	}
	return client, server, nil
}

// sinkDone receives the byte count of every connection the sink finished
// that carried any.
var sinkDone = make(chan int64, 4)

func startSink() (net.Listener, error) {
	l, err := net.Listen("tcp", sinkAddr)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				var n int64
				for {
					m, err := c.Read(buf)
					n += int64(m)
					if err != nil {
						break
					}
				}
				if n > 0 { // not a readiness probe's connection (waitTCP)
					sinkDone <- n
				}
			}()
		}
	}()
	return l, nil
}

// throughput writes as fast as possible for *tcpDur and returns MB/s and
// the bytes moved, as counted by the sink.
func throughput(addr string) (float64, int64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(i*7 + 1) // not an HTTP or TLS prefix
	}
	var sent int64
	start := time.Now()
	end := start.Add(*tcpDur)
	for time.Now().Before(end) {
		n, err := c.Write(buf)
		sent += int64(n)
		if err != nil {
			c.Close()
			return 0, 0, err
		}
	}
	c.Close()
	select {
	case got := <-sinkDone:
		elapsed := time.Since(start)
		if got != sent {
			return 0, 0, fmt.Errorf("sink received %d bytes of %d", got, sent)
		}
		return float64(got) / elapsed.Seconds() / 1e6, got, nil
	case <-time.After(30 * time.Second):
		return 0, 0, fmt.Errorf("sink never finished")
	}
}
