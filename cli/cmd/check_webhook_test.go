package cmd

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/rest"
)

// The webhook check dials the injector through a port-forward and verifies
// its certificate against the caBundle, as the API server does.
func TestCheckWebhookTLSProbe(t *testing.T) {
	withVersion(t, "v1.2.3")
	ca, _ := pki.NewRoot("webhook-ca", 24*time.Hour)
	stranger, _ := pki.NewRoot("stranger", 24*time.Hour)
	serve := func(signer *pki.CA, name string) *httptest.Server {
		key, _ := pki.NewKey()
		leaf, err := signer.SignLeaf(name, key.Public(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: key}}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv
	}
	cases := []struct {
		name string
		srv  *httptest.Server
		want string // "" = passes
	}{
		{"trusted", serve(ca, "conduit-injector.conduit.svc"), ""},
		{"other CA", serve(stranger, "conduit-injector.conduit.svc"), "does not answer TLS on port 8443"},
		{"wrong name", serve(ca, "somewhere.else.svc"), "does not answer TLS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := healthyCluster(t)
			objs["webhook"].(*admv1.MutatingWebhookConfiguration).Webhooks[0].ClientConfig.CABundle = pki.CertPEM(ca.Cert)
			delete(objs, "injector-tls")
			objs["endpoints"].(*discoveryv1.EndpointSlice).Endpoints[0].TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: "conduit-injector-1"}
			k := kubeOf(objs)
			k.Config = &rest.Config{Host: "https://unused"}
			old := portForward
			var forwarded string
			portForward = func(_ context.Context, _ *Kube, ns, pod string, port int) (string, func(), error) {
				forwarded = ns + "/" + pod
				return strings.TrimPrefix(tc.srv.URL, "https://"), func() {}, nil
			}
			t.Cleanup(func() { portForward = old })
			out, _, err := runWith(t, k, "check", "--wait", "0s", "-o", "short")
			if forwarded != "conduit/conduit-injector-1" {
				t.Errorf("forwarded to %q", forwarded)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("check failed: %v\n%s", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "× the proxy injector webhook is reachable") {
				t.Fatalf("err = %v, output:\n%s", err, out)
			}
		})
	}
}
