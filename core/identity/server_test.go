package identity

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// serveGRPC serves s on a loopback port and returns a client.
func serveGRPC(t testing.TB, s *Service) identityv1.IdentityClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	identityv1.RegisterIdentityServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return identityv1.NewIdentityClient(conn)
}

func TestCertifyOverGRPC(t *testing.T) {
	p := newTestPKI(t, "a")
	s, _ := newTestService(t, fakeTokens{"good": "system:serviceaccount:emojivoto:web", "other": "system:serviceaccount:emojivoto:admin"}, staticIssuer{p.loaded(t)})
	c := serveGRPC(t, s)
	ctx := context.Background()
	csr := makeCSR(t, p256(t), []string{testID})
	resp, err := c.Certify(ctx, &identityv1.CertifyRequest{Identity: testID, Token: []byte("good"), CertificateSigningRequest: csr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificate(resp.GetLeafCertificate()); err != nil {
		t.Fatal(err)
	}
	_, err = c.Certify(ctx, &identityv1.CertifyRequest{Identity: testID, Token: []byte("other"), CertificateSigningRequest: csr})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.HasPrefix(st.Message(), "identity: the token is for ServiceAccount emojivoto/admin") {
		t.Fatalf("forged identity: %v, want PermissionDenied naming the token's ServiceAccount", err)
	}
}

func TestAdminHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	store := &IssuerStore{}
	srv := httptest.NewServer(AdminHandler(reg, store))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	if code, _ := get("/live"); code != 200 {
		t.Errorf("/live = %d", code)
	}
	if code, body := get("/ready"); code != 503 || !strings.Contains(body, "no valid issuer") {
		t.Errorf("/ready before an issuer = %d %q, want 503", code, body)
	}
	store.Set(newTestPKI(t, "a").loaded(t))
	if code, _ := get("/ready"); code != 200 {
		t.Errorf("/ready with an issuer = %d, want 200", code)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, `conduit_identity_certify_failures_total{reason="identity_mismatch"} 0`) {
		t.Errorf("/metrics = %d, missing the failure counters:\n%s", code, body)
	}
}

// BenchmarkCertify50 measures Certify over gRPC with 50 concurrent callers
// (token validation faked: this is the CA's own cost) and reports p50/p99.
func BenchmarkCertify50(b *testing.B) {
	p := newTestPKI(b, "a")
	s, _ := newTestService(b, fakeTokens{"good": "system:serviceaccount:emojivoto:web"}, staticIssuer{p.loaded(b)})
	s.log = discardLog()
	c := serveGRPC(b, s)
	req := &identityv1.CertifyRequest{Identity: testID, Token: []byte("good"), CertificateSigningRequest: makeCSR(b, p256(b), []string{testID})}
	const callers = 50
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	var wg sync.WaitGroup
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	b.ResetTimer()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				start := time.Now()
				if _, err := c.Certify(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
				d := time.Since(start)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}
