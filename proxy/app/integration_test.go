package app_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/conduit-mesh/conduit/pkg/grpcecho"
	"github.com/conduit-mesh/conduit/pkg/pki"
	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
	"github.com/conduit-mesh/conduit/proxy/app"
	"github.com/conduit-mesh/conduit/proxy/config"
	"github.com/conduit-mesh/conduit/proxy/inbound"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

const (
	identityName    = "conduit-identity.conduit.serviceaccount.identity.conduit.cluster.local"
	destinationName = "conduit-destination.conduit.serviceaccount.identity.conduit.cluster.local"
	clientID        = "client.test.serviceaccount.identity.conduit.cluster.local"
	serverID        = "web.test.serviceaccount.identity.conduit.cluster.local"
	token           = "good-token"
	// loopbackNetworks are the cluster networks of the proxies here:
	// loopback, where every process is, and the 10.0.0.0/8 of the default,
	// where the tests put the original destinations of Services.
	loopbackNetworks = "10.0.0.0/8,127.0.0.0/8,::1/128"
)

// mesh is an in-process control plane: a CA, an identity service and a
// destination service, both over TLS on loopback.
type mesh struct {
	t          *testing.T
	issuer     *pki.CA
	anchorsPEM []byte
	identity   string // address
	dest       string // address
	tokenFile  string

	mu        sync.Mutex
	endpoints map[string][]*destinationv1.WeightedAddr     // Get path -> endpoints
	profiles  map[string]*destinationv1.DestinationProfile // GetProfile path -> profile
	certified []string
	gets      map[string]int // Get streams opened per path
	profGets  map[string]int // GetProfile streams opened per path
	stops     []func()
	waited    map[*app.Proxy]chan struct{} // closed when the proxy's Wait returns
}

func newMesh(t *testing.T) *mesh {
	t.Helper()
	root, err := pki.NewRoot("root.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := root.NewIssuer("issuer.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m := &mesh{t: t, issuer: issuer, anchorsPEM: pki.CertPEM(root.Cert),
		endpoints: map[string][]*destinationv1.WeightedAddr{}, profiles: map[string]*destinationv1.DestinationProfile{},
		gets: map[string]int{}, profGets: map[string]int{}, waited: map[*app.Proxy]chan struct{}{}}
	m.tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(m.tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	m.identity = m.serve(identityName, func(s *grpc.Server) { identityv1.RegisterIdentityServer(s, &identitySrv{m: m}) })
	m.dest = m.serve(destinationName, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, &destSrv{m: m}) })
	return m
}

func (m *mesh) serverCert(name string) tls.Certificate {
	key, err := pki.NewKey()
	if err != nil {
		m.t.Fatal(err)
	}
	leaf, err := m.issuer.SignLeaf(name, key.Public(), time.Hour)
	if err != nil {
		m.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, m.issuer.Cert.Raw}, PrivateKey: key, Leaf: leaf}
}

func (m *mesh) serve(name string, register func(*grpc.Server)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(m.anchorsPEM)
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{m.serverCert(name)},
		ClientAuth:   tls.VerifyClientCertIfGiven, ClientCAs: pool,
	})))
	register(s)
	go func() { _ = s.Serve(l) }()
	m.t.Cleanup(s.Stop)
	m.stops = append(m.stops, s.Stop)
	return l.Addr().String()
}

type identitySrv struct {
	identityv1.UnimplementedIdentityServer
	m *mesh
}

func (s *identitySrv) Certify(_ context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	if string(req.GetToken()) != token {
		return nil, status.Error(codes.Unauthenticated, "bad token")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCertificateSigningRequest())
	if err != nil || csr.CheckSignature() != nil || len(csr.DNSNames) != 1 || csr.DNSNames[0] != req.GetIdentity() {
		return nil, status.Error(codes.InvalidArgument, "bad CSR")
	}
	leaf, err := s.m.issuer.SignLeaf(req.GetIdentity(), csr.PublicKey, time.Hour)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.m.mu.Lock()
	s.m.certified = append(s.m.certified, req.GetIdentity())
	s.m.mu.Unlock()
	return &identityv1.CertifyResponse{LeafCertificate: leaf.Raw,
		IntermediateCertificates: [][]byte{s.m.issuer.Cert.Raw}, ValidUntil: timestamppb.New(leaf.NotAfter)}, nil
}

type destSrv struct {
	destinationv1.UnimplementedDestinationServer
	m *mesh
}

func (s *destSrv) Get(req *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.Update]) error {
	s.m.mu.Lock()
	eps, ok := s.m.endpoints[req.GetPath()]
	s.m.gets[req.GetPath()]++
	s.m.mu.Unlock()
	var u *destinationv1.Update
	if ok {
		u = &destinationv1.Update{Update: &destinationv1.Update_Add{Add: &destinationv1.WeightedAddrSet{
			Addrs: eps, MetricLabels: map[string]string{"namespace": "test", "service": "web"}}}}
	} else {
		u = &destinationv1.Update{Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: false}}}
	}
	if err := stream.Send(u); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (s *destSrv) GetProfile(req *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	s.m.mu.Lock()
	p, ok := s.m.profiles[req.GetPath()]
	s.m.profGets[req.GetPath()]++
	s.m.mu.Unlock()
	if !ok {
		p = &destinationv1.DestinationProfile{}
	}
	if err := stream.Send(p); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func meshedAddr(addr, id string) *destinationv1.WeightedAddr {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return &destinationv1.WeightedAddr{
		Addr: &destinationv1.TcpAddress{Ip: host, Port: uint32(p)}, Weight: 1,
		MetricLabels: map[string]string{"pod": "web-0"},
		TlsIdentity:  &destinationv1.TlsIdentity{DnsLikeIdentity: id},
		ProtocolHint: &destinationv1.ProtocolHint{Protocol: &destinationv1.ProtocolHint_H2_{H2: &destinationv1.ProtocolHint_H2{}}},
	}
}

// startProxy runs a proxy with identity id whose inbound forwards to inTarget
// and whose outbound original destination is outDst.
func (m *mesh) startProxy(t *testing.T, id string, inTarget, outDst string) *app.Proxy {
	t.Helper()
	return m.startProxyEnv(t, id, inTarget, outDst, nil, true)
}

// twoProxies starts a server proxy whose inbound forwards to appAddr, makes
// it the only endpoint of web.test, and starts a client proxy whose outbound
// sends there (its original destination is 10.255.255.1:80); env goes to
// both.
func (m *mesh) twoProxies(t *testing.T, appAddr string, env map[string]string) (client, server *app.Proxy) {
	t.Helper()
	server = m.startProxyEnv(t, serverID, appAddr, "127.0.0.1:1", env, true)
	m.mu.Lock()
	m.endpoints["web.test.svc.cluster.local:80"] = []*destinationv1.WeightedAddr{meshedAddr(server.InboundAddr().String(), serverID)}
	m.mu.Unlock()
	client = m.startProxyEnv(t, clientID, "127.0.0.1:1", "10.255.255.1:80", env, true)
	return client, server
}

// startProxyEnv is startProxy with extra environment; waitReady waits for
// the first certificate.
func (m *mesh) startProxyEnv(t *testing.T, id string, inTarget, outDst string, extra map[string]string, waitReady bool) *app.Proxy {
	t.Helper()
	p, _ := m.startProxyCtl(t, id, inTarget, outDst, extra, waitReady, app.Overrides{})
	return p
}

// startProxyCtl is startProxyEnv with overrides (the original destinations
// are always the static ones given); stop ends the proxy's context, as
// SIGTERM does.
func (m *mesh) startProxyCtl(t *testing.T, id string, inTarget, outDst string, extra map[string]string, waitReady bool, ov app.Overrides) (p *app.Proxy, stop context.CancelFunc) {
	t.Helper()
	env := map[string]string{
		"CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR":    "127.0.0.1:0",
		"CONDUIT_PROXY_INBOUND_LISTEN_ADDR":     "127.0.0.1:0",
		"CONDUIT_PROXY_ADMIN_LISTEN_ADDR":       "127.0.0.1:0",
		"CONDUIT_PROXY_DESTINATION_ADDR":        m.dest,
		"CONDUIT_PROXY_DESTINATION_NAME":        destinationName,
		"CONDUIT_PROXY_DESTINATION_CONTEXT":     `{"ns":"test","pod":"p"}`,
		"CONDUIT_PROXY_IDENTITY_ADDR":           m.identity,
		"CONDUIT_PROXY_IDENTITY_SERVER_NAME":    identityName,
		"CONDUIT_PROXY_IDENTITY_NAME":           id,
		"CONDUIT_PROXY_IDENTITY_TOKEN_FILE":     m.tokenFile,
		"CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS":  string(m.anchorsPEM),
		"CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD":   "2s",
		"CONDUIT_PROXY_DETECT_PROTOCOL_TIMEOUT": "500ms",
		// Every process here is on loopback, outside the default cluster
		// networks: looked up like pods.
		"CONDUIT_PROXY_CLUSTER_NETWORKS": loopbackNetworks,
	}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	in := netip.MustParseAddrPort(inTarget)
	out := netip.MustParseAddrPort(outDst)
	ctx, cancel := context.WithCancel(context.Background())
	ov.InboundOrigDst, ov.OutboundOrigDst = origdst.Static(in), origdst.Static(out)
	p, err = app.Start(ctx, cfg, log, ov)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.Wait(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	m.mu.Lock()
	m.waited[p] = done
	m.mu.Unlock()
	if !waitReady {
		return p, cancel
	}
	select {
	case <-p.Identity.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("proxy %s got no certificate", id)
	}
	return p, cancel
}

// app records what the application saw.
type seen struct {
	ClientIDs []string
	Proto     string
	Host      string
}

// slowRequests is how many concurrent /slow/ requests the test sends.
const slowRequests = 4

// testApp is the application behind the server proxy. It holds each /slow/
// request, reporting its arrival on slowArrived, until slowRelease closes,
// so that a test can look at the connections while all are in flight.
type testApp struct {
	addr        string
	last        func() seen
	slowArrived chan struct{}
	slowRelease chan struct{}
	// next lets /events write its next event.
	next chan struct{}
	// held receives a /hold request's path when it arrives and again
	// when its context ends (its client went).
	held chan string
}

func startApp(t *testing.T) *testApp {
	t.Helper()
	var mu sync.Mutex
	var s seen
	a := &testApp{slowArrived: make(chan struct{}, 64), slowRelease: make(chan struct{}), next: make(chan struct{}), held: make(chan string, 4)}
	a.last = func() seen { mu.Lock(); defer mu.Unlock(); return s }
	grpcApp := grpc.NewServer()
	grpcecho.Register(grpcApp, "web-0")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s = seen{ClientIDs: r.Header.Values("Conduit-Client-Id"), Proto: r.Proto, Host: r.Host}
		mu.Unlock()
		if r.Header.Get("conduit-orig-proto") != "" {
			http.Error(w, "orig-proto leaked", http.StatusTeapot)
			return
		}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			grpcApp.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Upgrade") == "echo" {
			echoSwitched(w, nil)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/hold/") {
			a.held <- r.URL.Path + " arrived"
			select {
			case <-r.Context().Done():
				a.held <- r.URL.Path + " cancelled"
			case <-time.After(15 * time.Second):
			}
			return
		}
		if r.URL.Path == "/events" {
			// Server-sent events, each written only once the client
			// has the one before: a hop that buffers a response body
			// stalls it.
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				if i > 0 {
					select {
					case <-a.next:
					case <-r.Context().Done():
						return
					}
				}
				fmt.Fprintf(w, "data: event %d\n\n", i)
				w.(http.Flusher).Flush()
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			a.slowArrived <- struct{}{}
			<-a.slowRelease
		}
		fmt.Fprintf(w, "hello %s %d", r.URL.Path, len(body))
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	a.addr = l.Addr().String()
	return a
}

// testGRPC runs grpcecho.Check through the client proxy at out: unary
// calls (a 1 MiB message, headers and trailers, an error status) and a
// full-duplex stream where each message must come back before the next is
// sent (it hangs if a hop buffers). The app must see the client's identity.
func testGRPC(t *testing.T, out string) {
	conn := grpcConn(t, out)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := grpcecho.Check(ctx, conn, 20, 9500)
	if err != nil {
		t.Fatal(err)
	}
	if res.ClientID != clientID {
		t.Errorf("app saw conduit-client-id %q, want %q", res.ClientID, clientID)
	}
}

// grpcConn is a gRPC client connection to web.test:80 through the
// outbound proxy at out, closed when t ends.
func grpcConn(t *testing.T, out string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///web.test:80", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", out)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func h1Client(dial string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", dial)
		}}}
}

func h2cClient(dial string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: inbound.H2CTransport(
		func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", dial)
		})}
}

// scrape returns the /metrics exposition of the proxy whose admin
// address is admin.
func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricSum adds up the samples of the metric name whose labels contain
// every one of labels (as name="value" text).
func metricSum(t *testing.T, admin string, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
lines:
	for _, line := range strings.Split(scrape(t, admin), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// TestTwoProxiesMTLS runs HTTP/1.1 and h2c through a client and a server
// proxy over mTLS, with each way HTTP/1 can travel between them: over the
// endpoint's one HTTP/2 connection (the default), on pooled HTTP/1.1
// connections (the fast path's meshed transport), and through net/http
// only (fast path off); HTTP/2 between the proxies travels on the proxy's
// own client and server (internal/h2) or on net/http's.
func TestTwoProxiesMTLS(t *testing.T) {
	for _, mode := range []struct {
		name string
		env  map[string]string
		// minConns and maxConns bound the mTLS connections to the server
		// proxy while slowRequests HTTP/1 requests are in flight: the one
		// HTTP/2 connection, or one HTTP/1.1 connection per request (plus
		// the HTTP/2 connection the h2c case opened).
		minConns, maxConns float64
	}{
		{name: "HTTP/1 over one HTTP/2 connection", minConns: 1, maxConns: 1},
		{name: "HTTP/1.1 between proxies", env: map[string]string{"CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT": "http1"}, minConns: slowRequests, maxConns: slowRequests + 1},
		{name: "fast path off", env: map[string]string{"CONDUIT_PROXY_HTTP1_FAST_PATH": "false"}, minConns: 1, maxConns: 1},
		{name: "net/http HTTP/2 between proxies", env: map[string]string{"CONDUIT_PROXY_HTTP2_FAST_PATH": "false"}, minConns: 1, maxConns: 1},
		{name: "both fast paths off", env: map[string]string{"CONDUIT_PROXY_HTTP1_FAST_PATH": "false", "CONDUIT_PROXY_HTTP2_FAST_PATH": "false"}, minConns: 1, maxConns: 1},
	} {
		t.Run(mode.name, func(t *testing.T) { testTwoProxies(t, mode.env, mode.minConns, mode.maxConns) })
	}
}

func testTwoProxies(t *testing.T, env map[string]string, minConns, maxConns float64) {
	m := newMesh(t)
	app := startApp(t)
	appAddr, last := app.addr, app.last
	client, server := m.twoProxies(t, appAddr, env)
	out := client.OutboundAddr().String()

	tests := []struct {
		name   string
		client *http.Client
		url    string
		proto  string
		wantID []string
	}{
		{"http1 short name", h1Client(out), "http://web/a", "HTTP/1.1", []string{clientID}},
		{"http1 fqdn", h1Client(out), "http://web.test.svc.cluster.local/b", "HTTP/1.1", []string{clientID}},
		{"h2c (gRPC-like)", h2cClient(out), "http://web.test:80/c", "HTTP/2.0", []string{clientID}},
		{"unmeshed client straight to inbound", h1Client(server.InboundAddr().String()), "http://web/d", "HTTP/1.1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, tt.url, strings.NewReader("12345"))
			req.Header.Set("Conduit-Client-Id", "spoofed.identity")
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s (%s)", resp.StatusCode, body, resp.Header.Get("conduit-proxy-error"))
			}
			path := tt.url[strings.LastIndex(tt.url, "/"):]
			if want := "hello " + path + " 5"; string(body) != want {
				t.Errorf("body %q, want %q", body, want)
			}
			s := last()
			if fmt.Sprint(s.ClientIDs) != fmt.Sprint(tt.wantID) {
				t.Errorf("app saw conduit-client-id %q, want %q", s.ClientIDs, tt.wantID)
			}
			if s.Proto != tt.proto {
				t.Errorf("app saw %s, want %s", s.Proto, tt.proto)
			}
		})
	}

	t.Run("gRPC", func(t *testing.T) { testGRPC(t, out) })

	// Metrics carry Linkerd's names and the peer labels from discovery.
	metricsText := scrape(t, client.AdminAddr().String())
	for _, want := range []string{
		`request_total{direction="outbound",authority="web.test.svc.cluster.local:80",route="",tls="true",server_id="` + serverID + `",dst_namespace="test",dst_pod="web-0",dst_service="web"}`,
		`response_total{direction="outbound",authority="web.test.svc.cluster.local:80"`,
		`response_latency_ms_bucket{`,
		`tcp_open_connections{direction="outbound",peer="dst",tls="true",server_id="` + serverID + `"`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("client metrics lack %s", want)
		}
	}
	metricsText = scrape(t, server.AdminAddr().String())
	if want := `request_total{direction="inbound",authority="web.test.svc.cluster.local",route="",tls="true",client_id="` + clientID + `"}`; !strings.Contains(metricsText, want) {
		t.Errorf("server metrics lack %s\n%s", want, metricsText)
	}

	// Concurrent HTTP/1 requests: multiplexed on the one HTTP/2 connection
	// between the proxies, or each on its own pooled HTTP/1.1 connection.
	// The connections are counted while the app holds all the requests.
	var wg sync.WaitGroup
	errs := make(chan error, slowRequests)
	for i := range slowRequests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h1Client(out).Get(fmt.Sprintf("http://web/slow/%d", i))
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d: %s", resp.StatusCode, body)
			}
		}()
	}
	for range slowRequests {
		select {
		case <-app.slowArrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the concurrent requests did not all reach the app")
		}
	}
	open := metricSum(t, server.AdminAddr().String(), "tcp_open_connections", `direction="inbound"`, `tls="true"`)
	close(app.slowRelease)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if open < minConns || open > maxConns {
		t.Errorf("%d requests in flight over %v mTLS connections to the server proxy, want %v to %v", slowRequests, open, minConns, maxConns)
	}
	if got := metricSum(t, server.AdminAddr().String(), "response_total", `direction="inbound"`, `client_id="`+clientID+`"`, `status_code="200"`); got < 7 {
		t.Errorf("server proxy counted %v authenticated 200 responses, want at least 7", got)
	}
	// What the fast path hands to http.Transport still goes through.
	t.Run("expect 100-continue", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", out)
			}}}
		req, _ := http.NewRequest(http.MethodPut, "http://web/expect", strings.NewReader("12345"))
		req.Header.Set("Expect", "100-continue")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello /expect 5" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("server-sent events arrive one by one", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://web/events", nil)
		resp, err := h1Client(out).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d (%s)", resp.StatusCode, resp.Header.Get("conduit-proxy-error"))
		}
		br := bufio.NewReader(resp.Body)
		for i := range 3 {
			if i > 0 {
				select {
				case app.next <- struct{}{}:
				case <-ctx.Done():
					t.Fatalf("the app did not wait to write event %d", i)
				}
			}
			line, err := br.ReadString('\n')
			if want := fmt.Sprintf("data: event %d\n", i); err != nil || line != want {
				t.Fatalf("event %d: %q %v, want %q (a hop holds the response body back)", i, line, err, want)
			}
			if blank, err := br.ReadString('\n'); err != nil || blank != "\n" {
				t.Fatalf("after event %d: %q %v", i, blank, err)
			}
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
			t.Fatalf("after the last event: %q %v, want the end", rest, err)
		}
	})
	// A client that hangs up while the app works on its request (a long
	// poll): the app's request ends too, through both proxies.
	t.Run("a client's hang-up reaches the app", func(t *testing.T) {
		c, err := net.Dial("tcp", out)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /hold/1 HTTP/1.1\r\nHost: web\r\n\r\n")
		for _, want := range []string{"/hold/1 arrived", "/hold/1 cancelled"} {
			select {
			case got := <-app.held:
				if got != want {
					t.Fatalf("app: %s, want %s", got, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("app: no %q in 10 s", want)
			}
			_ = c.Close()
		}
	})
	t.Run("upgrade", func(t *testing.T) {
		c, _ := switchProtocols(t, out, "web", "Conduit-Client-Id: spoofed.identity\r\n")
		defer c.Close()
		// It crossed with mTLS, as every request between the proxies:
		// the server proxy names the client's identity.
		if s := last(); fmt.Sprint(s.ClientIDs) != fmt.Sprint([]string{clientID}) {
			t.Errorf("app saw conduit-client-id %q on the upgrade, want %q", s.ClientIDs, clientID)
		}
	})
	t.Run("an upgrade the app declines", func(t *testing.T) {
		// curl --http2 on http:// asks for h2c this way; a server that
		// does not switch answers as usual, over mTLS, and the
		// connection serves the next request.
		c, err := net.Dial("tcp", out)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for _, req := range []string{
			"GET /h2c HTTP/1.1\r\nHost: web\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
			"GET /next HTTP/1.1\r\nHost: web\r\n\r\n",
		} {
			_, _ = io.WriteString(c, req)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			path := strings.Fields(req)[1]
			if want := "hello " + path + " 0"; resp.StatusCode != 200 || string(b) != want {
				t.Fatalf("%s: %d %q (%s), want 200 %q", path, resp.StatusCode, b, resp.Header.Get("Conduit-Proxy-Error"), want)
			}
			if s := last(); fmt.Sprint(s.ClientIDs) != fmt.Sprint([]string{clientID}) {
				t.Errorf("%s: app saw conduit-client-id %q, want %q", path, s.ClientIDs, clientID)
			}
		}
	})
}

// echoSwitched answers a request with "Upgrade: echo": 101, then the
// switched connection echoes until it closes. switched, when not nil, gets
// the connection first.
func echoSwitched(w http.ResponseWriter, switched func(net.Conn)) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	_ = brw.Flush()
	if switched != nil {
		switched(c)
	}
	_, _ = io.Copy(c, brw)
}

// switchProtocols sends GET /up to host through the outbound proxy at out
// with "Upgrade: echo" (and extra header lines), wants 101, and checks
// that the switched connection echoes. It returns the connection and its
// reader.
func switchProtocols(t *testing.T, out, host, extra string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", out)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET /up HTTP/1.1\r\nHost: "+host+"\r\nConnection: Upgrade\r\nUpgrade: echo\r\n"+extra+"\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		t.Fatalf("upgrade: status %d (%s), want 101", resp.StatusCode, resp.Header.Get("conduit-proxy-error"))
	}
	if err := echoes(c, br, "ping"); err != nil {
		c.Close()
		t.Fatalf("after the switch: %v", err)
	}
	return c, br
}

// echoes writes msg on a switched connection c and reads it back from br.
func echoes(c net.Conn, br *bufio.Reader, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		return fmt.Errorf("echo of %q: %w (got %q)", msg, err, got)
	}
	if string(got) != msg {
		return fmt.Errorf("echoed %q, want %q", got, msg)
	}
	return nil
}

func TestOpaqueMTLS(t *testing.T) {
	m := newMesh(t)
	// A TCP echo server that speaks first, like MySQL or SMTP.
	app := serveTCP(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "220 hello\n")
		_, _ = io.Copy(c, c)
	})
	server := m.startProxy(t, serverID, app, "127.0.0.1:1")
	ep := meshedAddr(server.InboundAddr().String(), serverID)
	ep.ProtocolHint = &destinationv1.ProtocolHint{Protocol: &destinationv1.ProtocolHint_Opaque_{Opaque: &destinationv1.ProtocolHint_Opaque{}}}
	m.mu.Lock()
	m.profiles["10.9.9.9:3306"] = &destinationv1.DestinationProfile{OpaqueProtocol: true, Endpoint: ep}
	m.mu.Unlock()
	client := m.startProxy(t, clientID, "127.0.0.1:1", "10.9.9.9:3306")

	c, err := net.Dial("tcp", client.OutboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil || greeting != "220 hello\n" {
		t.Fatalf("server-speaks-first greeting: %q, %v", greeting, err)
	}
	_, _ = io.WriteString(c, "ping\n")
	if echo, err := r.ReadString('\n'); err != nil || echo != "ping\n" {
		t.Fatalf("echo %q, %v", echo, err)
	}
	text := scrape(t, server.AdminAddr().String())
	// The server side saw an mTLS connection from the client identity.
	if want := `tcp_open_total{direction="inbound",peer="src",tls="true",client_id="` + clientID + `"} 1`; !strings.Contains(text, want) {
		t.Errorf("server metrics lack %s\n%s", want, text)
	}

	// TLS that is not for this proxy's identity is passed through untouched:
	// the client's handshake reaches the application, which answers in plain text.
	raw, err := net.Dial("tcp", server.InboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	herr := tls.Client(raw, &tls.Config{ServerName: "example.com", InsecureSkipVerify: true}).Handshake()
	if herr == nil || !strings.Contains(herr.Error(), "does not look like a TLS handshake") {
		t.Errorf("foreign TLS was not passed through to the application: %v", herr)
	}
}
