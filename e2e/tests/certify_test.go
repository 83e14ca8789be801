//go:build e2e

package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
)

// TestCertifyRefusalsThroughTheProxy: a refused Certify call reaches its
// caller with the identity service's own status and reason, through the
// identity pod's proxy, which terminates TLS for it as it does for every
// proxy's call. The test calls from the node, as a proxy does: TLS to the
// identity pod's address, verifying the service's identity against the
// trust anchors (only the proxy can answer that handshake: the identity
// container listens in plaintext behind it). grpc-go answers a refusal as
// trailers-only (one HEADERS frame that ends the stream); a proxy that
// split it into HEADERS and an empty DATA frame (as the HTTP/2 fast path
// once did, found by proxy/realcp) turned every refusal into "Internal:
// server closed the stream without sending trailers", and each proxy
// logged that instead of why its token was refused.
func TestCertifyRefusalsThroughTheProxy(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ctx := framework.Context(t, 3*time.Minute)
	pod := f.WaitPodsReady(t, framework.ControlPlaneNamespace, "conduit.dev/control-plane-component=identity", 1, 2*time.Minute)[0]
	roots := x509.NewCertPool()
	for _, c := range trustBundle(t, f, ctx) {
		roots.AddCert(c)
	}
	serviceID := "conduit-identity." + framework.ControlPlaneNamespace + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	creds := credentials.NewTLS(&tls.Config{ServerName: serviceID, RootCAs: roots, MinVersion: tls.VersionTLS13})
	conn, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(pod.Status.PodIP, "8080"), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := identityv1.NewIdentityClient(conn)

	ns := f.NewNamespace(t, "certify", nil)
	f.WaitFor(t, "ServiceAccount default in "+ns, time.Minute, func(ctx context.Context) (bool, error) {
		_, err := f.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	token := func(audience string) []byte {
		t.Helper()
		return []byte(f.Token(t, ns, "default", audience))
	}
	id := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{id}}, key)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		token []byte
		code  codes.Code
		msg   string // in the status message
	}{
		{"garbage token", []byte("not-a-token"), codes.InvalidArgument, "dot-separated parts"},
		{"token for another audience", token("https://kubernetes.default.svc.cluster.local"), codes.Unauthenticated, "the token is for audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			_, err := client.Certify(cctx, &identityv1.CertifyRequest{Identity: id, Token: tc.token, CertificateSigningRequest: csr})
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("Certify: %v, want %v with a message saying %q", err, tc.code, tc.msg)
			}
			t.Logf("Certify: %v", err)
		})
	}
	// Control: the same channel certifies with a good token, so the
	// refusals above are the service's answers to this caller.
	t.Run("control: a good token is certified", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		resp, err := client.Certify(cctx, &identityv1.CertifyRequest{Identity: id, Token: token("identity.conduit.dev"), CertificateSigningRequest: csr})
		if err != nil {
			t.Fatalf("Certify with a good token: %v", err)
		}
		leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
		if err != nil {
			t.Fatalf("the certificate issued: %v", err)
		}
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != id {
			t.Fatalf("the certificate issued names %v, want [%s]", leaf.DNSNames, id)
		}
	})
}
