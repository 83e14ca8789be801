//go:build e2e

package tests

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// TestIdentityRenewalUnderTraffic shortens the workload certificates to one
// minute (`mesh upgrade --identity-issuance-lifetime 1m`), then sends a
// request every 200 ms from a meshed client to a meshed server for longer
// than the proxies take to renew (70 % of the lifetime): both proxies must
// present new certificates afterwards, and not one request may fail.
func TestIdentityRenewalUnderTraffic(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ctx := framework.Context(t, 10*time.Minute)

	upgrade := func(t *testing.T, lifetime string) {
		t.Helper()
		out := f.MeshCmd(t, "upgrade", "--identity-issuance-lifetime", lifetime)
		f.KubectlCmd(t, out, "apply", "--server-side", "--force-conflicts", "-f", "-")
		f.WaitRollout(t, framework.ControlPlaneNamespace, "deployment/conduit-identity", 3*time.Minute)
	}
	upgrade(t, "1m0s")
	t.Cleanup(func() { upgrade(t, "24h0m0s") })

	ns := meshedNamespace(t, f, "renewal")
	f.Apply(t, ns, injectorApps(f.Image("testapp")))
	server := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)
	// No request may fail: the first ones may go to the Service's cluster IP
	// (before discovery knows it), so kube-proxy must know it.
	f.WaitEndpoints(t, ns, "server", 1, time.Minute)

	// The certificate each proxy presents, from its admin endpoint.
	cert := func(t *testing.T, pod string) *x509.Certificate {
		t.Helper()
		port := f.PortForward(t, ns, pod, 4191)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/identity/certificate", port), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		block, _ := pem.Decode(b)
		if resp.StatusCode != http.StatusOK || block == nil {
			t.Fatalf("%s: GET /identity/certificate = %d:\n%s", pod, resp.StatusCode, b)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	before := map[string]*x509.Certificate{server.Name: cert(t, server.Name), "client": cert(t, "client")}
	for pod, c := range before {
		if life := c.NotAfter.Sub(c.NotBefore); life > 3*time.Minute {
			t.Fatalf("%s: certificate valid for %s, want about 1m (the upgrade did not take)", pod, life)
		}
	}

	// 450 requests, one every 200 ms: about 90 s, over one renewal of each
	// proxy (at 70 % of 1 minute) and past the first certificates' expiry.
	start := time.Now()
	out, _, err := f.ExecE(framework.Context(t, 4*time.Minute), ns, "client", "client", nil,
		"testapp", "get", "-summary", "-n", "450", "-interval", "200ms", "-timeout", "5s", "http://server:8080/")
	if err != nil {
		t.Fatalf("traffic during renewal: %v (output %q)", err, out)
	}
	if strings.TrimSpace(out) != "450 ok" {
		t.Fatalf("traffic during renewal: %q, want 450 ok", out)
	}
	for pod, old := range before {
		now := cert(t, pod)
		if now.SerialNumber.Cmp(old.SerialNumber) == 0 {
			t.Errorf("%s: still the certificate of %s after %s of traffic (expires %s)", pod, old.NotBefore, time.Since(start).Round(time.Second), old.NotAfter)
			continue
		}
		if now.DNSNames[0] != old.DNSNames[0] {
			t.Errorf("%s: renewed certificate names %v, was %v", pod, now.DNSNames, old.DNSNames)
		}
		t.Logf("%s: certificate %s (until %s) renewed as %s (until %s), 450 requests, none failed",
			pod, old.SerialNumber, old.NotAfter.Format(time.TimeOnly), now.SerialNumber, now.NotAfter.Format(time.TimeOnly))
	}
}
