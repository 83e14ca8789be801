//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/cli/cmd"
	"github.com/conduit-mesh/conduit/core/identity"
	"github.com/conduit-mesh/conduit/e2e/framework"
	"github.com/conduit-mesh/conduit/pkg/pki"
	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestIdentityAgainstAPIServer runs the identity service in-process against
// the real API server: the Secret and ConfigMap reload path with its events,
// and Certify with real ServiceAccount tokens checked by TokenReview.
func TestIdentityAgainstAPIServer(t *testing.T) {
	f := framework.New(t)
	ns := f.NewNamespace(t, "identity", nil)
	ctx := framework.Context(t, 3*time.Minute)
	core := f.Client.CoreV1()
	log := slog.New(slog.DiscardHandler)

	a, err := pki.NewRoot("root.a", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	aIss, _ := a.NewIssuer("identity.a", 12*time.Hour)
	b, _ := pki.NewRoot("root.b", 24*time.Hour)
	bIss, _ := b.NewIssuer("identity.b", 12*time.Hour)
	secretData := func(iss, anchor *pki.CA) map[string][]byte {
		k, _ := pki.KeyPEM(iss.Key)
		return map[string][]byte{"tls.crt": pki.CertPEM(iss.Cert), "tls.key": k, "ca.crt": pki.CertPEM(anchor.Cert)}
	}
	if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conduit-identity-trust-roots"},
		Data: map[string]string{"ca-bundle.crt": string(pki.CertPEM(a.Cert))}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "conduit-identity-issuer"},
		Type: corev1.SecretTypeTLS, Data: secretData(aIss, a)}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	metrics := identity.NewMetrics(nil)
	store := &identity.IssuerStore{}
	rec, stopEvents := identity.NewEventRecorder(f.Client, ns, "conduit-identity")
	defer stopEvents()
	w := &identity.Watcher{Client: f.Client, Namespace: ns, SecretName: "conduit-identity-issuer", ConfigMapName: "conduit-identity-trust-roots",
		Store: store, Recorder: rec, Metrics: metrics, Log: log}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = w.Run(wctx) }()

	waitEvent := func(reason, contains string) {
		t.Helper()
		f.WaitFor(t, "event "+reason+" "+contains, time.Minute, func(ctx context.Context) (bool, error) {
			evs, err := core.Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=conduit-identity-issuer"})
			if err != nil {
				return false, err
			}
			for _, e := range evs.Items {
				if e.Reason == reason && strings.Contains(e.Message, contains) {
					return true, nil
				}
			}
			return false, nil
		})
	}
	waitEvent(identity.EventIssuerUpdated, `"identity.a"`)

	svc, err := identity.NewService(identity.Config{ControlPlaneNamespace: ns, TrustDomain: "cluster.local", CertLifetime: time.Hour},
		&identity.TokenReviewValidator{Client: f.Client, Audience: "identity.conduit.dev"}, store, metrics, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"web", "other", "gone"} {
		if _, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	token := func(sa, audience string) []byte {
		t.Helper()
		return []byte(f.Token(t, ns, sa, audience))
	}
	webID := identity.Name("web", ns, ns, "cluster.local")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{webID}}, key)
	goneToken := token("gone", "identity.conduit.dev")
	if err := core.ServiceAccounts(ns).Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	certify := func(id string, tok []byte) (*identityv1.CertifyResponse, error) {
		return svc.Certify(ctx, &identityv1.CertifyRequest{Identity: id, Token: tok, CertificateSigningRequest: csr})
	}
	verify := func(resp *identityv1.CertifyResponse, anchor *pki.CA) {
		t.Helper()
		leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
		if err != nil {
			t.Fatal(err)
		}
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(anchor.Cert)
		for _, d := range resp.GetIntermediateCertificates() {
			c, _ := x509.ParseCertificate(d)
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: webID, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("leaf does not verify against %q: %v", anchor.Cert.Subject.CommonName, err)
		}
	}

	resp, err := certify(webID, token("web", "identity.conduit.dev"))
	if err != nil {
		t.Fatalf("Certify with a good token: %v", err)
	}
	verify(resp, a)

	refusals := []struct {
		name   string
		id     string
		tok    []byte
		code   codes.Code
		reason string
	}{
		{"wrong audience", webID, token("web", "https://kubernetes.default.svc.cluster.local"), codes.Unauthenticated, "the token is for audience"},
		{"forged identity", webID, token("other", "identity.conduit.dev"), codes.PermissionDenied, "not the requested"},
		{"deleted ServiceAccount", identity.Name("gone", ns, ns, "cluster.local"), goneToken, codes.Unauthenticated, "not found"},
		{"garbage token", webID, []byte("not-a-token"), codes.InvalidArgument, "dot-separated parts"},
		{"tampered token", webID, append(token("web", "identity.conduit.dev"), 'x'), codes.Unauthenticated, "refused the token"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			c := csr
			if r.id != webID {
				c, _ = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{r.id}}, key)
			}
			_, err := svc.Certify(ctx, &identityv1.CertifyRequest{Identity: r.id, Token: r.tok, CertificateSigningRequest: c})
			st := status.Convert(err)
			if err == nil || st.Code() != r.code {
				t.Fatalf("err = %v, want code %s", err, r.code)
			}
			if !strings.Contains(st.Message(), r.reason) {
				t.Errorf("message %q does not contain %q", st.Message(), r.reason)
			}
			t.Logf("%s: %s", st.Code(), st.Message())
		})
	}

	// A Secret whose issuer is not under the bundle is refused and the last good issuer kept.
	s, _ := core.Secrets(ns).Get(ctx, "conduit-identity-issuer", metav1.GetOptions{})
	s.Data = secretData(bIss, b)
	if _, err := core.Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(identity.EventIssuerInvalid, `keeping the last good issuer "identity.a"`)
	if resp, err := certify(webID, token("web", "identity.conduit.dev")); err != nil {
		t.Fatal(err)
	} else {
		verify(resp, a)
	}
	// Adding B to the bundle makes it valid: the service switches to B's issuer.
	cm, _ := core.ConfigMaps(ns).Get(ctx, "conduit-identity-trust-roots", metav1.GetOptions{})
	cm.Data["ca-bundle.crt"] = string(pki.CertPEM(a.Cert)) + string(pki.CertPEM(b.Cert))
	if _, err := core.ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(identity.EventIssuerUpdated, `"identity.b"`)
	resp, err = certify(webID, token("web", "identity.conduit.dev"))
	if err != nil {
		t.Fatal(err)
	}
	verify(resp, b)
}

// meshedWeb imitates a meshed Deployment of the control plane in namespace %[2]s:
// its "proxy" reads the trust anchors from the ConfigMap at start, as the
// control plane's own proxies do.
const meshedWeb = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, conduit.dev/control-plane-ns: %[2]s}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: conduit-proxy
        image: %[1]s
        imagePullPolicy: IfNotPresent
        args: [serve, -addr, ":8080"]
        env:
        - name: CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS
          valueFrom: {configMapKeyRef: {name: conduit-identity-trust-roots, key: ca-bundle.crt}}
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
`

// TestIdentityRotateAnchors runs `mesh identity rotate-anchors` against the
// real API server and controllers: a control plane of its own namespace (the
// identity service in-process, its Secret and ConfigMap) and a Deployment whose
// pods count as meshed. It checks the real rollouts, change times and events
// the command relies on; traffic through real proxies is not part of it.
func TestIdentityRotateAnchors(t *testing.T) {
	f := framework.New(t)
	ns := f.NewNamespace(t, "identity-rotate", nil)
	ctx := framework.Context(t, 8*time.Minute)
	core := f.Client.CoreV1()
	log := slog.New(slog.DiscardHandler)

	a, _ := pki.NewRoot("root.a", 24*time.Hour)
	aIss, _ := a.NewIssuer("identity.a", 12*time.Hour)
	aKey, _ := pki.KeyPEM(aIss.Key)
	if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conduit-identity-trust-roots"},
		Data: map[string]string{"ca-bundle.crt": string(pki.CertPEM(a.Cert))}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "conduit-identity-issuer"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": pki.CertPEM(aIss.Cert), "tls.key": aKey, "ca.crt": pki.CertPEM(a.Cert)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	store := &identity.IssuerStore{}
	rec, stopEvents := identity.NewEventRecorder(f.Client, ns, "conduit-identity")
	defer stopEvents()
	w := &identity.Watcher{Client: f.Client, Namespace: ns, SecretName: "conduit-identity-issuer", ConfigMapName: "conduit-identity-trust-roots",
		Store: store, Recorder: rec, Metrics: identity.NewMetrics(nil), Log: log}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = w.Run(wctx) }()

	f.Apply(t, ns, fmt.Sprintf(meshedWeb, f.Image("testapp"), ns))
	f.WaitRollout(t, ns, "deployment/web", 3*time.Minute)
	start := time.Now().Add(-time.Second)

	dir := t.TempDir()
	var out, errb bytes.Buffer
	root := cmd.NewRootCmd(&cmd.Options{Out: &out, Err: &errb, In: strings.NewReader("")})
	root.SetArgs([]string{"--kubeconfig", f.Kubeconfig, "--conduit-namespace", ns, "identity", "rotate-anchors",
		"--generate-dir", filepath.Join(dir, "b"), "--timeout", "3m"})
	err := root.ExecuteContext(ctx)
	t.Logf("rotate-anchors output:\n%s%s", out.String(), errb.String())
	if err != nil {
		t.Fatalf("rotate-anchors: %v", err)
	}

	bPEM, err := os.ReadFile(filepath.Join(dir, "b", "anchor.crt"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pki.ParseCertificates(bPEM)
	cm, _ := core.ConfigMaps(ns).Get(ctx, "conduit-identity-trust-roots", metav1.GetOptions{})
	if got, _ := pki.ParseCertificates([]byte(cm.Data["ca-bundle.crt"])); len(got) != 1 || !got[0].Equal(b[0]) {
		t.Errorf("the bundle is not B alone: %d certificates", len(got))
	}
	if cur := store.Current(); cur == nil || cur.CA.Cert.CheckSignatureFrom(b[0]) != nil {
		t.Error("the identity service does not sign with B's issuer")
	}
	pods := f.DeploymentPods(t, ns, "web")
	for _, p := range pods {
		if p.CreationTimestamp.Time.Before(start) {
			t.Errorf("pod %s predates the rotation: it was not restarted", p.Name)
		}
	}
	for _, want := range []string{"Step 2/6", "restarted deployment/web", "rollout of deployment/web", "Step 6/6", "Done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestIdentityCertifyLatency measures Certify with 50 concurrent callers, each
// call checked by a real TokenReview, and logs p50/p99.
func TestIdentityCertifyLatency(t *testing.T) {
	f := framework.New(t)
	ns := f.NewNamespace(t, "identity-bench", nil)
	ctx := framework.Context(t, 3*time.Minute)
	core := f.Client.CoreV1()
	a, _ := pki.NewRoot("root.a", 24*time.Hour)
	aIss, _ := a.NewIssuer("identity.a", 12*time.Hour)
	key, _ := pki.KeyPEM(aIss.Key)
	iss, err := identity.LoadIssuer(map[string][]byte{"tls.crt": pki.CertPEM(aIss.Cert), "tls.key": key}, pki.CertPEM(a.Cert), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	store := &identity.IssuerStore{}
	store.Set(iss)
	// The rate limits of controller identity (--kube-api-qps, --kube-api-burst), not the framework's.
	cfg := rest.CopyConfig(f.Config)
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := identity.NewService(identity.Config{ControlPlaneNamespace: ns, TrustDomain: "cluster.local", CertLifetime: time.Hour},
		&identity.TokenReviewValidator{Client: client, Audience: "identity.conduit.dev"}, store, identity.NewMetrics(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id := identity.Name("web", ns, ns, "cluster.local")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{id}}, k)
	req := &identityv1.CertifyRequest{Identity: id, Token: []byte(f.Token(t, ns, "web", "identity.conduit.dev")), CertificateSigningRequest: csr}

	const callers, perCaller = 50, 20
	lat := make([]time.Duration, 0, callers*perCaller)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perCaller {
				t0 := time.Now()
				if _, err := svc.Certify(ctx, req); err != nil {
					errs <- err
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := time.Since(start)
	slices.Sort(lat)
	t.Logf("Certify with TokenReview, %d concurrent callers, %d calls in %s (%.0f/s): p50 %s, p99 %s, max %s",
		callers, len(lat), total.Round(time.Millisecond), float64(len(lat))/total.Seconds(),
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
}
