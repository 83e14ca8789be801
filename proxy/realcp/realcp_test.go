package realcp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/grpcecho"
	"github.com/conduit-mesh/conduit/pkg/pki"
)

// TestTwoProxies runs a client and a server proxy on the real control
// plane: both are certified by the identity service, the client resolves
// web.shop through the destination service, and the two talk mTLS, so
// that the application sees the client's identity in conduit-client-id.
func TestTwoProxies(t *testing.T) {
	c := newCluster(t)
	server := c.workloadProxy(t, web0, startApp(t, "web-0"))
	c.apply(t, webSlice("web-0", port(server.InboundAddr())))
	client := c.workloadProxy(t, frontend, c.nowhere.addr)

	t.Run("certificates from the issuer", func(t *testing.T) {
		for _, p := range []struct {
			name string
			p    *meshProxy
			id   string
		}{{"client", client, clientID}, {"server", server, webID}} {
			t.Run(p.name, func(t *testing.T) {
				status, body := httpGet(t, "http://"+p.p.AdminAddr().String()+"/identity/certificate")
				if status != http.StatusOK {
					t.Fatalf("GET /identity/certificate: %d %s", status, body)
				}
				certs, err := pki.ParseCertificates([]byte(body))
				if err != nil {
					t.Fatalf("GET /identity/certificate: %v", err)
				}
				c.checkLeaf(t, certs[0], certs[1:], p.id)
			})
		}
		// What the server proxy presents to a client asking for its identity.
		t.Run("server handshake", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			d := tls.Dialer{Config: &tls.Config{ServerName: webID, RootCAs: c.anchors, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}}}
			conn, err := d.DialContext(ctx, "tcp", server.InboundAddr().String())
			if err != nil {
				t.Fatalf("TLS to the server proxy as %s, trusting the ConfigMap's anchors: %v", webID, err)
			}
			defer conn.Close()
			cs := conn.(*tls.Conn).ConnectionState()
			c.checkLeaf(t, cs.PeerCertificates[0], cs.PeerCertificates[1:], webID)
		})
	})

	httpc := httpVia(t, client)
	conn := grpcVia(t, client, "web.shop.svc.cluster.local:80")
	for _, tt := range []struct {
		name  string
		call  func(ctx context.Context) (reply, error)
		proto string // the protocol the application sees; "" for gRPC
	}{
		{"HTTP/1.1 to the Service's name", func(ctx context.Context) (reply, error) {
			return get(ctx, httpc, "http://web.shop.svc.cluster.local/")
		}, "HTTP/1.1"},
		{"HTTP/1.1 to a short name in the client's namespace", func(ctx context.Context) (reply, error) {
			return get(ctx, httpc, "http://web/")
		}, "HTTP/1.1"},
		{"HTTP/1.1 to the Service's name and port", func(ctx context.Context) (reply, error) {
			return get(ctx, httpc, "http://web.shop.svc.cluster.local:80/orders")
		}, "HTTP/1.1"},
		{"gRPC", func(ctx context.Context) (reply, error) {
			// Unary calls (1 MiB, headers, trailers, an error status) and a
			// full-duplex stream of 10 messages.
			res, err := grpcecho.Check(ctx, conn, 10, 1024)
			var ids []string
			if res.ClientID != "" {
				ids = strings.Split(res.ClientID, ",")
			}
			return reply{Pod: res.Pod, ClientIDs: ids}, err
		}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
			defer cancel()
			r, err := tt.call(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r.Pod != "web-0" {
				t.Errorf("answered by pod %q, want web-0", r.Pod)
			}
			if !slices.Equal(r.ClientIDs, []string{clientID}) {
				t.Errorf("the application saw conduit-client-id %q, want [%q]: the client proxy's identity as the identity service signed it, authenticated by mTLS", r.ClientIDs, clientID)
			}
			if tt.proto != "" && r.Proto != tt.proto {
				t.Errorf("the application saw %s, want %s", r.Proto, tt.proto)
			}
		})
	}

	// The client proxy's metrics carry what the destination service
	// announced: the endpoint's identity (and mTLS), its pod, the
	// ServiceProfile's route.
	if got := metricLines(t, client.AdminAddr().String(), "request_total", `direction="outbound"`,
		`authority="web.shop.svc.cluster.local:80"`, `route="GET /"`, `tls="true"`, `server_id="`+webID+`"`, `dst_pod="web-0"`); len(got) == 0 {
		t.Errorf("the client proxy counted no request to web.shop over mTLS with server_id %s on the ServiceProfile's route \"GET /\"", webID)
	}
	if got := metricLines(t, server.AdminAddr().String(), "request_total", `direction="inbound"`, `tls="true"`, `client_id="`+clientID+`"`); len(got) == 0 {
		t.Errorf("the server proxy counted no request over mTLS from client_id %s", clientID)
	}
}

// checkLeaf checks a proxy's certificate: its only name is id, the
// identity service's issuer signed it, and with the intermediates it came
// with it verifies against the trust anchors of the ConfigMap, for TLS
// server and client authentication.
func (c *cluster) checkLeaf(t *testing.T, leaf *x509.Certificate, chain []*x509.Certificate, id string) {
	t.Helper()
	if !slices.Equal(leaf.DNSNames, []string{id}) {
		t.Errorf("certificate names %q, want exactly [%q]", leaf.DNSNames, id)
	}
	if err := leaf.CheckSignatureFrom(c.issuer); err != nil {
		t.Errorf("certificate of %s is not signed by the issuer of Secret %s: %v", id, issuerSecret, err)
	}
	inter := x509.NewCertPool()
	for _, ic := range chain {
		inter.AddCert(ic)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: c.anchors, Intermediates: inter, DNSName: id, KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			t.Errorf("certificate of %s does not verify against the trust anchors (usage %v): %v", id, usage, err)
			continue
		}
		if anchor := chains[0][len(chains[0])-1]; !anchor.Equal(c.root) {
			t.Errorf("certificate of %s chains to %q, want the anchor %q", id, anchor.Subject.CommonName, c.root.Subject.CommonName)
		}
	}
}

// TestRefusedToken starts proxies whose token the identity service must
// refuse: each stays unready, without a certificate, and logs the
// identity service's reason, which the service counts too.
func TestRefusedToken(t *testing.T) {
	c := newCluster(t)
	for _, tt := range []struct {
		name  string
		token token
		// reason is the identity service's failure metric label; "" for
		// a token it accepts.
		reason string
		// want is in the proxy's log line of the failure.
		want []string
	}{
		{"its own ServiceAccount's token", c.token(t, frontend, tokenAudience, true), "", nil},
		{"a token the API server does not know", c.token(t, frontend, tokenAudience, false), "token_invalid",
			[]string{"code = Unauthenticated", "token refused", "invalid bearer token"}},
		{"another ServiceAccount's token", c.token(t, web0, tokenAudience, true), "identity_mismatch",
			[]string{"code = PermissionDenied", "the token is for ServiceAccount shop/web,", "not the requested"}},
		{"a token for another audience", c.token(t, frontend, "https://kubernetes.default.svc.cluster.local", true), "token_wrong_audience",
			[]string{"code = Unauthenticated", "token refused", "the token is for audience"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			failures := c.identityMetric(t, "conduit_identity_certify_failures_total", `reason="`+tt.reason+`"`)
			p := c.startProxy(t, proxySpec{
				w: frontend, token: tt.token, inbound: c.nowhere.addr,
				identityAddr: c.identityAddr, identityServerName: identityID, destAddr: c.destAddr,
			})
			admin := "http://" + p.AdminAddr().String()
			if tt.reason == "" {
				eventually(t, "the proxy is ready", func() (bool, string) {
					status, body := httpGet(t, admin+"/ready")
					return status == http.StatusOK, fmt.Sprintf("/ready: %d %s", status, strings.TrimSpace(body))
				})
				if c.reviewsOf(tt.token.value) == 0 {
					t.Error("the proxy was certified without a TokenReview of its token")
				}
				return
			}
			// The first Certify and a retry, both refused.
			eventually(t, "the identity service refused the token twice and the proxy logged why", func() (bool, string) {
				_, logged := p.logs.line(append([]string{"certify failed"}, tt.want...)...)
				n := c.reviewsOf(tt.token.value)
				return logged && n >= 2, fmt.Sprintf("%d TokenReview(s) of the token; failure logged with %q: %v", n, tt.want, logged)
			})
			if p.Identity.IsReady() {
				t.Fatal("the proxy has a certificate although the identity service refused its token")
			}
			if status, body := httpGet(t, admin+"/ready"); status != http.StatusServiceUnavailable || !strings.Contains(body, "no certificate") {
				t.Errorf("/ready: %d %q, want 503 \"not ready: no certificate yet\"", status, strings.TrimSpace(body))
			}
			if status, body := httpGet(t, admin+"/identity/certificate"); status != http.StatusServiceUnavailable {
				t.Errorf("/identity/certificate: %d %q, want 503", status, strings.TrimSpace(body))
			}
			if got := c.identityMetric(t, "conduit_identity_certify_failures_total", `reason="`+tt.reason+`"`) - failures; got < 2 {
				t.Errorf("the identity service counted %v more refusals with reason %s, want at least 2", got, tt.reason)
			}
		})
	}
}

// TestEndpointUpdate moves Service web's EndpointSlice from web-0 to
// web-1, another pod with another ServiceAccount: the destination service
// streams the change to the client proxy, whose next requests reach web-1
// over mTLS with web-1's identity.
func TestEndpointUpdate(t *testing.T) {
	c := newCluster(t)
	server0 := c.workloadProxy(t, web0, startApp(t, "web-0"))
	server1 := c.workloadProxy(t, web1, startApp(t, "web-1"))
	c.apply(t, webSlice("web-0", port(server0.InboundAddr())))
	client := c.workloadProxy(t, frontend, c.nowhere.addr)
	httpc := httpVia(t, client)
	conn := grpcVia(t, client, "web.shop.svc.cluster.local:80")
	const url = "http://web.shop.svc.cluster.local/"

	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	r, err := get(ctx, httpc, url)
	if err != nil {
		t.Fatal(err)
	}
	if r.Pod != "web-0" {
		t.Fatalf("before the update: answered by %q, want web-0", r.Pod)
	}
	tally, err := grpcecho.UnaryCalls(ctx, conn, 3, 64)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"web-0": 3}; !maps.Equal(tally.Pods, want) {
		t.Fatalf("before the update: gRPC calls answered by %v, want %v", tally.Pods, want)
	}

	c.apply(t, webSlice("web-1", port(server1.InboundAddr())))
	eventually(t, "a request reaches web-1 after the EndpointSlice moved there", func() (bool, string) {
		r, err := get(ctx, httpc, url)
		if err != nil {
			return false, err.Error()
		}
		return r.Pod == "web-1", "answered by " + r.Pod
	})
	for i := range 5 {
		r, err := get(ctx, httpc, url)
		if err != nil {
			t.Fatalf("request %d after the update: %v", i, err)
		}
		if r.Pod != "web-1" || !slices.Equal(r.ClientIDs, []string{clientID}) {
			t.Errorf("request %d after the update: answered by %q, which saw conduit-client-id %q; want web-1 and [%q]", i, r.Pod, r.ClientIDs, clientID)
		}
	}
	tally, err = grpcecho.UnaryCalls(ctx, conn, 5, 64)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"web-1": 5}; !maps.Equal(tally.Pods, want) {
		t.Errorf("after the update: gRPC calls answered by %v, want %v", tally.Pods, want)
	}
	if want := map[string]int{clientID: 5}; !maps.Equal(tally.ClientIDs, want) {
		t.Errorf("after the update: web-1 saw conduit-client-id %v, want %v", tally.ClientIDs, want)
	}
	// The client proxy talked mTLS to web-1's identity, as announced.
	if got := metricLines(t, client.AdminAddr().String(), "request_total", `direction="outbound"`, `tls="true"`,
		`server_id="`+webV2ID+`"`, `dst_pod="web-1"`); len(got) == 0 {
		t.Errorf("the client proxy counted no request over mTLS to server_id %s (pod web-1)", webV2ID)
	}
	if got := metricLines(t, server1.AdminAddr().String(), "request_total", `direction="inbound"`, `tls="true"`, `client_id="`+clientID+`"`); len(got) == 0 {
		t.Errorf("web-1's proxy counted no request over mTLS from client_id %s", clientID)
	}
}

func port(a net.Addr) int { return a.(*net.TCPAddr).Port }
