package identity

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"testing"
	"time"

	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRun wires the whole service against a fake API server: it becomes ready
// once the issuer loads, issues over plaintext gRPC, and drains on cancel.
func TestRun(t *testing.T) {
	p := newTestPKI(t, "a")
	client := fake.NewClientset(issuerSecret(t, p), anchorsConfigMap(p))
	client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		tr.Status = authnv1.TokenReviewStatus{Authenticated: true, Audiences: tr.Spec.Audiences, User: authnv1.UserInfo{Username: "system:serviceaccount:emojivoto:web"}}
		return true, tr, nil
	})
	cfg := ServerConfig{
		Config: Config{ControlPlaneNamespace: testCPNS, TrustDomain: testDomain, CertLifetime: time.Hour},
		Addr:   freeAddr(t), AdminAddr: freeAddr(t),
		IssuerSecret: testSecret, TrustAnchorsConfigMap: testCM, TokenAudience: "identity.conduit.dev",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, client, discardLog()) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + cfg.AdminAddr + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 10s (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	conn, err := grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	enc := base64.RawURLEncoding.EncodeToString
	token := enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"aud":["identity.conduit.dev"]}`)) + ".c2ln"
	resp, err := identityv1.NewIdentityClient(conn).Certify(ctx, &identityv1.CertifyRequest{
		Identity: testID, Token: []byte(token), CertificateSigningRequest: makeCSR(t, p256(t), []string{testID}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetLeafCertificate()) == 0 {
		t.Fatal("no leaf")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", cfg.Addr, time.Second); err == nil {
		t.Error("the gRPC port still accepts connections after shutdown")
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	err := Run(context.Background(), ServerConfig{Config: Config{ControlPlaneNamespace: "c", TrustDomain: "d", CertLifetime: time.Hour}}, fake.NewClientset(), discardLog())
	if err == nil {
		t.Fatal("Run without a token audience succeeded")
	}
}
