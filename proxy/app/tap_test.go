package app_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
	"github.com/conduit-mesh/conduit/proxy/app"
)

var tapOn = map[string]string{"CONDUIT_PROXY_TAP_ENABLED": "true", "CONDUIT_PROXY_TAP_ADDR": "127.0.0.1:0"}

func tapClient(t *testing.T, p *app.Proxy) tapv1.TapClient {
	t.Helper()
	if p.TapAddr() == nil {
		t.Fatal("tap is not served")
	}
	cc, err := grpc.NewClient(p.TapAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return tapv1.NewTapClient(cc)
}

// TestTap taps one request on both proxies: the client's outbound and the
// server's inbound each stream exactly its three events.
func TestTap(t *testing.T) {
	m := newMesh(t)
	appAddr := startApp(t).addr
	m.mu.Lock()
	m.profiles["web.test.svc.cluster.local:80"] = &destinationv1.DestinationProfile{
		FullyQualifiedName: "web.test.svc.cluster.local",
		Routes:             []*destinationv1.Route{route("tapped-post", "POST", "/tapped/.*", false, 0)},
	}
	m.mu.Unlock()
	client, server := m.twoProxies(t, appAddr, tapOn)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := tapClient(t, server).Observe(ctx, &tapv1.ObserveRequest{Match: &tapv1.Match{PathPrefix: "/tapped/"}, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := tapClient(t, client).Observe(ctx, &tapv1.ObserveRequest{Match: &tapv1.Match{
		Direction: tapv1.Direction_OUTBOUND, PathPrefix: "/tapped/", DestinationLabels: map[string]string{"namespace": "test", "service": "web"}}, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}

	hc := h1Client(client.OutboundAddr().String())
	do := func(path string) {
		t.Helper()
		resp, err := hc.Post("http://web"+path, "text/plain", strings.NewReader("12345"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
	}
	// The Observe streams are registered asynchronously: requests are sent
	// until both streams saw the tapped one; "/other" never matches.
	type result struct {
		evs []*tapv1.TapEvent
		err error
	}
	collect := func(s grpc.ServerStreamingClient[tapv1.TapEvent], first chan<- struct{}, done chan<- result) {
		var r result
		for {
			ev, err := s.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					r.err = err
				}
				break
			}
			if len(r.evs) == 0 {
				close(first)
			}
			r.evs = append(r.evs, ev)
		}
		done <- r
	}
	inFirst, outFirst := make(chan struct{}), make(chan struct{})
	inDone, outDone := make(chan result, 1), make(chan result, 1)
	go collect(in, inFirst, inDone)
	go collect(out, outFirst, outDone)
	deadline := time.Now().Add(10 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("the tapped request was not seen by both proxies")
		}
		do("/other")
		do("/tapped/1")
		time.Sleep(20 * time.Millisecond)
		select {
		case <-inFirst:
			select {
			case <-outFirst:
				seen = true
			default:
			}
		default:
		}
	}
	inRes, outRes := <-inDone, <-outDone
	if inRes.err != nil || outRes.err != nil {
		t.Fatalf("streams: inbound %v, outbound %v", inRes.err, outRes.err)
	}
	inEvents, outEvents := inRes.evs, outRes.evs

	check := func(side string, evs []*tapv1.TapEvent, dir tapv1.Direction) {
		t.Helper()
		if len(evs) != 3 || evs[0].GetRequestInit() == nil || evs[1].GetResponseInit() == nil || evs[2].GetResponseEnd() == nil {
			t.Fatalf("%s: events %v, want request_init, response_init, response_end", side, evs)
		}
		for _, ev := range evs {
			if ev.GetStreamId() != evs[0].GetStreamId() || ev.GetDirection() != dir || !ev.GetTls() {
				t.Errorf("%s: event %v: stream id, direction or tls differ", side, ev)
			}
		}
		if ri := evs[0].GetRequestInit(); ri.GetMethod() != "POST" || ri.GetPath() != "/tapped/1" || ri.GetAt() == nil {
			t.Errorf("%s: request_init %v", side, ri)
		}
		if st := evs[1].GetResponseInit().GetHttpStatus(); st != 200 {
			t.Errorf("%s: status %d", side, st)
		}
		end := evs[2].GetResponseEnd()
		if end.GetFailure() || end.GetError() != "" || end.GetResponseBytes() != uint64(len("hello /tapped/1 5")) ||
			end.GetSinceRequestInit().AsDuration() < evs[1].GetResponseInit().GetSinceRequestInit().AsDuration() {
			t.Errorf("%s: response_end %v", side, end)
		}
	}
	check("inbound", inEvents, tapv1.Direction_INBOUND)
	check("outbound", outEvents, tapv1.Direction_OUTBOUND)

	if ev := inEvents[0]; ev.GetClientId() != clientID || ev.GetServerId() != "" || ev.GetRequestInit().GetAuthority() != "web" {
		t.Errorf("inbound: client_id %q server_id %q authority %q", ev.GetClientId(), ev.GetServerId(), ev.GetRequestInit().GetAuthority())
	}
	ev := outEvents[0]
	if ev.GetServerId() != serverID || ev.GetClientId() != "" || ev.GetDestination() != server.InboundAddr().String() ||
		ev.GetRoute() != "tapped-post" || ev.GetRequestInit().GetAuthority() != "web.test.svc.cluster.local:80" ||
		ev.GetDestinationLabels()["pod"] != "web-0" || ev.GetDestinationLabels()["namespace"] != "test" {
		t.Errorf("outbound: %v", ev)
	}
	if !strings.HasPrefix(ev.GetSource(), "127.0.0.1:") {
		t.Errorf("outbound source %q, want the client's address", ev.GetSource())
	}
}

func TestTapDisabledByDefault(t *testing.T) {
	m := newMesh(t)
	p := m.startProxy(t, clientID, "127.0.0.1:1", "127.0.0.1:1")
	if a := p.TapAddr(); a != nil {
		t.Errorf("tap served on %s without CONDUIT_PROXY_TAP_ENABLED", a)
	}
}

// TestTapShutdown: draining ends the Observe streams.
func TestTapShutdown(t *testing.T) {
	m := newMesh(t)
	p := m.startProxyEnv(t, clientID, "127.0.0.1:1", "127.0.0.1:1", tapOn, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := tapClient(t, p).Observe(ctx, &tapv1.ObserveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the stream register
	p.Shutdown()
	if _, err := s.Recv(); err == nil || ctx.Err() != nil {
		t.Errorf("stream after shutdown: %v (ctx %v), want it ended by the proxy", err, ctx.Err())
	}
}

// TestIdentityCertificateEndpoint: 503 until the first certificate, then
// the leaf chain as PEM.
func TestIdentityCertificateEndpoint(t *testing.T) {
	m := newMesh(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := m.startProxyEnv(t, clientID, "127.0.0.1:1", "127.0.0.1:1",
		map[string]string{"CONDUIT_PROXY_IDENTITY_TOKEN_FILE": tokenFile}, false)
	url := "http://" + p.AdminAddr().String() + "/identity/certificate"
	get := func() (int, string, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	if code, _, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "no certificate yet") {
		t.Fatalf("before the certificate: %d %q", code, body)
	}
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Identity.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("no certificate after the token was fixed")
	}
	code, ctype, body := get()
	if code != 200 || ctype != "application/x-pem-file" {
		t.Fatalf("after the certificate: %d %q", code, ctype)
	}
	if strings.Contains(string(body), "PRIVATE KEY") {
		t.Fatal("the private key is exposed")
	}
	var chain []*x509.Certificate
	for rest := body; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(strings.TrimSpace(string(rest))) != 0 {
				t.Fatalf("trailing data: %q", rest)
			}
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) != 2 {
		t.Fatalf("%d certificates, want leaf and issuer", len(chain))
	}
	leaf := chain[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != clientID {
		t.Errorf("leaf names %v, want %s", leaf.DNSNames, clientID)
	}
	if cur := p.Identity.Certificate(); cur == nil || !leaf.Equal(cur.Leaf) {
		t.Error("served leaf is not the proxy's current certificate")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.anchorsPEM)
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: clientID,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("served chain does not verify: %v", err)
	}
}
