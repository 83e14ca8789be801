//go:build e2e

package tests

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/cli/healthcheck"
	"github.com/conduit-mesh/conduit/e2e/framework"
)

// TestIdentityRenewalUnderTraffic shortens the workload certificates to one
// minute (`mesh upgrade --identity-issuance-lifetime 1m`), then sends a
// request every 200 ms from a meshed client to a meshed server for longer
// than the proxies take to renew (70 % of the lifetime): both proxies must
// present new certificates afterwards, and not one request may fail. Then
// identity is stopped until the certificates expire: the proxies stay ready,
// say why in /ready, and renew once identity is back.
func TestIdentityRenewalUnderTraffic(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ctx := framework.Context(t, 10*time.Minute)

	f.UpgradeMesh(t, "--identity-issuance-lifetime", "1m0s")
	t.Cleanup(func() { f.UpgradeMesh(t, "--identity-issuance-lifetime", "24h0m0s") })

	ns := meshedNamespace(t, f, "renewal")
	f.Apply(t, ns, injectorApps(f.Image("testapp")))
	server := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)
	// No request may fail: the first ones may go to the Service's cluster IP
	// (before discovery knows it), so kube-proxy must know it.
	f.WaitEndpoints(t, ns, "server", 1, time.Minute)
	// A second client, in a namespace of its own (mesh check --proxy below
	// counts the proxies of ns), that does not call the server before the
	// certificates expire.
	ns2 := meshedNamespace(t, f, "renewal-late")
	f.Apply(t, ns2, sleeperPod("late", f.Image("testapp")))
	f.WaitPodsReady(t, ns2, "app=late", 1, 3*time.Minute)
	serverURL := "http://server." + ns + ".svc.cluster.local:8080/"

	// The certificate each proxy presents, from its admin endpoint.
	admin := map[string]int{server.Name: f.PortForward(t, ns, server.Name, 4191), "client": f.PortForward(t, ns, "client", 4191)}
	cert := func(t *testing.T, pod string) *x509.Certificate {
		t.Helper()
		chain, err := proxyChainAt(ctx, admin[pod])
		if err != nil {
			t.Fatalf("%s: %v", pod, err)
		}
		return chain[0]
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

	// Expiry: identity is stopped until both proxies' certificates have run
	// out. /ready stays 200, so the kubelet neither takes the pods out of
	// their Services nor restarts them, and its body says why mTLS fails;
	// `mesh identity` and `mesh check --proxy` show it. Once identity is
	// back, the proxies renew on their own within seconds.
	t.Run("an expired certificate keeps the proxy ready, with a warning, until renewed", func(t *testing.T) {
		restore := f.StopControllers(t, "identity")
		expiry := map[string]time.Time{}
		var last time.Time
		for pod := range admin {
			expiry[pod] = cert(t, pod).NotAfter
			if expiry[pod].After(last) {
				last = expiry[pod]
			}
		}
		t.Logf("identity stopped; certificates expire at %v", expiry)

		// Before the expiry, `mesh check --proxy` warns of each proxy once
		// 80 % of its certificate's life is spent without a renewal (the
		// two may not be overdue at the same time: one may have expired
		// by then, which the check's error lists with the overdue ones).
		overdue := map[string]bool{}
		f.WaitFor(t, "mesh check --proxy: each proxy overdue for renewal", 2*time.Minute, func(context.Context) (bool, error) {
			res := proxyCertCheck(t, f, ns)
			for _, item := range strings.Split(res.Error, "; ") { // one pod each
				for pod := range admin {
					if strings.Contains(item, ns+"/"+pod+": ") && strings.Contains(item, "of its certificate's life spent, not renewed") {
						overdue[pod] = true
					}
				}
			}
			if len(overdue) < len(admin) {
				return false, fmt.Errorf("overdue so far: %v; check: %s %q", overdue, res.Status, res.Error)
			}
			return true, nil
		})
		// Past the last expiry by more than the readiness probe's period (10 s).
		time.Sleep(time.Until(last) + 12*time.Second)

		for pod, port := range admin {
			code, body, err := adminGet(ctx, port, "/ready")
			if err != nil {
				t.Fatalf("%s: %v", pod, err)
			}
			want := "warning: the certificate expired at " + expiry[pod].UTC().Format(time.RFC3339)
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("%s: GET /ready after expiry = %d %q, want 200 with %q", pod, code, body, want)
			}
			_, metrics, err := adminGet(ctx, port, "/metrics")
			if err != nil {
				t.Fatalf("%s: %v", pod, err)
			}
			if got := metricSum(metrics, "identity_cert_expiration_timestamp_seconds"); got != float64(expiry[pod].Unix()) {
				t.Errorf("%s: identity_cert_expiration_timestamp_seconds %v, want %d", pod, got, expiry[pod].Unix())
			}
		}
		for pod := range admin {
			p, err := f.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !framework.PodReady(p) {
				t.Errorf("%s: not Ready with an expired certificate (the kubelet takes it out of its Services)", p.Name)
			}
			for _, cs := range p.Status.ContainerStatuses {
				if cs.RestartCount != 0 {
					t.Errorf("%s: container %s restarted %d times", p.Name, cs.Name, cs.RestartCount)
				}
			}
		}

		// Where an operator sees it: `mesh identity POD`, `mesh check --proxy`.
		if r := meshIdentity(t, f, ns, "client"); r.Trusted || !strings.HasPrefix(r.ExpiresIn, "expired ") || !r.NotAfter.Equal(expiry["client"]) {
			t.Errorf("mesh identity client with an expired certificate: %+v, want untrusted, expired at %s", r, expiry["client"])
		}
		if res := proxyCertCheck(t, f, ns); res.Status != healthcheck.Failure ||
			!strings.Contains(res.Error, "2 of 2 proxies") || strings.Count(res.Error, "certificate expired at") != 2 {
			t.Errorf("mesh check --proxy with expired certificates: %s %q, want an error naming both proxies", res.Status, res.Error)
		}

		// A proxy whose certificate expired sends nothing in plaintext: the
		// late client's proxy has not resolved the server yet, and the
		// destination service refuses its expired certificate, so it cannot
		// tell whether the server is meshed. It answers 503 rather than
		// forward to the Service's IP without mTLS (which the server's proxy
		// would accept, as from an unmeshed client).
		_, stderr, err := f.ExecE(framework.Context(t, time.Minute), ns2, "late", "late", nil,
			"testapp", "get", "-n", "1", "-timeout", "10s", serverURL)
		t.Logf("a request of an expired proxy to a target it has not resolved: %v: %s", err, strings.TrimSpace(stderr))
		if err == nil || !strings.Contains(stderr, "status 503") || !strings.Contains(stderr, "the destination service gave no answer for") {
			t.Errorf("a request of an expired proxy to a target it had not resolved: %v %q; want a 503 saying the destination service gave no answer", err, stderr)
		} else if took := refusedAfter(stderr); took < time.Second || took >= 2*time.Second {
			// The proxy looks up the Service's IP, its name and its
			// endpoints: one wait of CONDUIT_PROXY_DISCOVERY_TIMEOUT (1s)
			// in all, not one per name.
			t.Errorf("the 503 came %v after the request (%q), want after the 1s discovery timeout, once", took, stderr)
		}

		restore()
		back := time.Now()
		f.WaitFor(t, "both proxies renewed, without the warning", 4*time.Minute, func(ctx context.Context) (bool, error) {
			for pod, port := range admin {
				chain, err := proxyChainAt(ctx, port)
				if err != nil {
					return false, fmt.Errorf("%s: %w", pod, err)
				}
				if !chain[0].NotAfter.After(expiry[pod]) {
					return false, fmt.Errorf("%s: still the certificate that expired at %s", pod, expiry[pod].Format(time.TimeOnly))
				}
				code, body, err := adminGet(ctx, port, "/ready")
				if err != nil || code != http.StatusOK || strings.Contains(body, "warning") {
					return false, fmt.Errorf("%s: GET /ready = %d %q %v", pod, code, body, err)
				}
			}
			return true, nil
		})
		// An expired proxy retries at least every 5 s (identity.ExpiredMaxBackoff),
		// and so does its gRPC channel reconnect.
		took := time.Since(back)
		t.Logf("both proxies renewed %s after identity was back", took.Round(time.Second))
		if took > 30*time.Second {
			t.Errorf("the proxies took %s to renew once identity was back, want under 30s", took.Round(time.Second))
		}
		if r := meshIdentity(t, f, ns, "client"); !r.Trusted || !r.NotAfter.After(expiry["client"]) {
			t.Errorf("mesh identity client after renewal: %+v, want trusted, after %s", r, expiry["client"])
		}
		if res := proxyCertCheck(t, f, ns); res.Status != healthcheck.Success {
			t.Errorf("mesh check --proxy after renewal: %s %q", res.Status, res.Error)
		}
		out, _, err := f.ExecE(framework.Context(t, time.Minute), ns, "client", "client", nil,
			"testapp", "get", "-summary", "-n", "10", "-new-conn", "-timeout", "5s", "http://server:8080/")
		if err != nil || strings.TrimSpace(out) != "10 ok" {
			t.Fatalf("traffic after renewal: %q %v, want 10 ok", out, err)
		}
		// The late client renews too (its proxy retries every 5 s at most
		// once expired), and then connects.
		f.WaitFor(t, "the late client to reach the server once renewed", time.Minute, func(ctx context.Context) (bool, error) {
			out, stderr, err := f.ExecE(ctx, ns2, "late", "late", nil, "testapp", "get", "-summary", "-n", "1", "-timeout", "5s", serverURL)
			if err != nil || strings.TrimSpace(out) != "1 ok" {
				return false, fmt.Errorf("%q %v: %s", out, err, stderr)
			}
			return true, nil
		})
	})
}

// proxyCertCheck is the result of `mesh check --proxy`'s certificate check
// for the proxies of ns.
func proxyCertCheck(t *testing.T, f *framework.Framework, ns string) healthcheck.Result {
	t.Helper()
	return proxyCheck(t, f, ns, "data-plane proxies hold valid certificates that chain to the trust anchors")
}

// proxyCheck is the result of the check of `mesh check --proxy` for the
// proxies of ns that desc describes.
func proxyCheck(t *testing.T, f *framework.Framework, ns, desc string) healthcheck.Result {
	t.Helper()
	r := f.RunMesh(framework.Context(t, 2*time.Minute), "check", "--proxy", "-n", ns, "--wait", "0s", "-o", "json")
	var report healthcheck.Report
	if err := json.Unmarshal([]byte(r.Stdout), &report); err != nil {
		t.Fatalf("mesh check --proxy -o json: %v (%v):\n%s%s", err, r.Err, r.Stdout, r.Stderr)
	}
	for _, c := range report.Categories {
		for _, ch := range c.Checks {
			if ch.Description == desc {
				return ch
			}
		}
	}
	t.Fatalf("mesh check --proxy -o json has no check %q:\n%s", desc, r.Stdout)
	return healthcheck.Result{}
}

// identityReport is what `mesh identity POD -o json` says of a proxy's
// certificate (the fields this test reads).
type identityReport struct {
	NotAfter    time.Time `json:"notAfter"`
	ExpiresIn   string    `json:"expiresIn"`
	Trusted     bool      `json:"trusted"`
	TrustDetail string    `json:"trustDetail"`
}

func meshIdentity(t *testing.T, f *framework.Framework, ns, pod string) identityReport {
	t.Helper()
	var r identityReport
	out := f.MeshCmd(t, "identity", "-n", ns, pod, "-o", "json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("mesh identity -n %s %s -o json: %v:\n%s", ns, pod, err, out)
	}
	return r
}

// refusedAfter is how long testapp get's failed request took, from the
// "(after D)" its error ends with: 0 when stderr does not say.
func refusedAfter(stderr string) time.Duration {
	m := regexp.MustCompile(`\(after ([0-9.]+[a-zµ]+)\)`).FindStringSubmatch(stderr)
	if m == nil {
		return 0
	}
	d, _ := time.ParseDuration(m[1])
	return d
}
