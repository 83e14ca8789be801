//go:build e2e

package tests

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
	"github.com/conduit-mesh/conduit/pkg/pki"
)

// rotationApps: a meshed web tier (2 replicas) that passes every request on
// to a meshed server (2 replicas), both draining 5 s on SIGTERM as
// applications behind a Service should, and an unmeshed load generator pod
// that the rotation never restarts.
const rotationApps = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: server}
spec:
  replicas: 2
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app: server}}
  template:
    metadata: {labels: {app: server}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: server
        image: %[1]s
        imagePullPolicy: IfNotPresent
        args: [serve, -addr, ":8080", -drain, 5s]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  selector: {app: server}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: web
        image: %[1]s
        imagePullPolicy: IfNotPresent
        args: [serve, -addr, ":8080", -upstream, "http://server:8080", -drain, 5s]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata:
  name: load
  labels: {app: load}
  annotations: {conduit.dev/inject: disabled}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: load, image: %[1]s, imagePullPolicy: IfNotPresent, args: [sleep]}]
`

// TestAnchorRotationUnderTraffic rotates the installed mesh's trust anchor
// from A to a new anchor B with `mesh identity rotate-anchors` while an
// unmeshed generator sends requests, each on a new connection, through the
// meshed web pods to the meshed server pods (issue #5). The rotation
// restarts the control plane and both Deployments three times; not one
// request may fail, and every answer must show that web reached server over
// mTLS (the conduit-client-id the server's proxy set). Afterwards the bundle
// holds only B and every meshed pod's proxy presents a certificate that
// chains to B. The mesh stays on B for the tests that follow.
func TestAnchorRotationUnderTraffic(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.RequireMesh(t, "identity", "rotate-anchors")
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ctx := framework.Context(t, 25*time.Minute)

	ns := meshedNamespace(t, f, "rotation")
	// The rotation replaces every pod; keep the logs of those it replaces.
	f.FollowLogs(t, ns)
	f.FollowLogs(t, framework.ControlPlaneNamespace)
	// The injector must be up, else (failurePolicy Ignore) the pods would be admitted without a proxy.
	f.WaitPodsReady(t, framework.ControlPlaneNamespace, "conduit.dev/control-plane-component=injector", 1, 2*time.Minute)
	f.Apply(t, ns, fmt.Sprintf(rotationApps, f.Image("testapp")))
	f.WaitRollout(t, ns, "deployment/server", 3*time.Minute)
	f.WaitRollout(t, ns, "deployment/web", 3*time.Minute)
	load := f.WaitPodsReady(t, ns, "app=load", 1, 2*time.Minute)[0]
	if injected(&load) {
		t.Fatal("the load generator pod was injected; it must stay unmeshed (annotation conduit.dev/inject: disabled)")
	}
	meshedPods := func(t *testing.T) []corev1.Pod {
		t.Helper()
		var pods []corev1.Pod
		for _, app := range []string{"web", "server"} {
			for _, p := range f.WaitPodsReady(t, ns, "app="+app, 2, 3*time.Minute) {
				if !injected(&p) {
					t.Fatalf("pod %s has no proxy: admitted while the injector was unreachable?", p.Name)
				}
				pods = append(pods, p)
			}
		}
		return pods
	}
	meshedPods(t)

	anchorsA := trustBundle(t, f, ctx)
	f.WaitFor(t, "no meshed pod without a workload outside "+ns+" (rotate-anchors cannot restart them)", 2*time.Minute,
		func(ctx context.Context) (bool, error) {
			bare, err := bareMeshedPods(ctx, f, ns)
			if len(bare) > 0 {
				err = fmt.Errorf("meshed pods no workload owns: %v", bare)
			}
			return err == nil, err
		})

	// Every answer must carry the identity web's proxy presented to server's.
	webID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	mtls := fmt.Sprintf(`"Conduit-Client-Id":[%q]`, webID)
	checkMTLS := func(t *testing.T, when string) {
		t.Helper()
		var e struct {
			Pod      string
			Upstream *struct {
				Pod     string
				Headers map[string][]string
			}
		}
		out := f.Exec(t, ns, "load", "load", "testapp", "get", "-timeout", "10s", "http://web:8080/")
		if err := json.Unmarshal([]byte(out), &e); err != nil || e.Upstream == nil {
			t.Fatalf("%s: web's answer %q: %v", when, out, err)
		}
		if got := e.Upstream.Headers["Conduit-Client-Id"]; len(got) != 1 || got[0] != webID {
			t.Fatalf("%s: server %s saw conduit-client-id %q from web %s, want %q (mTLS between the meshed pods)", when, e.Upstream.Pod, got, e.Pod, webID)
		}
	}
	// The load pod is unmeshed, so it reaches web through kube-proxy, which programs
	// the Service a moment after its endpoints are ready: until then a connection is
	// refused. Wait for web to answer before the first check and the generator.
	f.WaitFor(t, "service web answering the unmeshed load pod", time.Minute, func(ctx context.Context) (bool, error) {
		_, _, err := f.ExecE(ctx, ns, "load", "load", nil, "testapp", "get", "-timeout", "5s", "http://web:8080/")
		return err == nil, err
	})
	checkMTLS(t, "before the rotation")

	// The generator: a request every 50 ms, each on a new connection through
	// the web Service (kube-proxy), until its stdin is closed. It never
	// retries, and it counts rather than stops at failures.
	stdin, closeStdin := io.Pipe()
	type result struct {
		stdout, stderr string
		err            error
	}
	done := make(chan result, 1)
	go func() {
		o, e, err := f.ExecE(ctx, ns, "load", "load", stdin,
			"testapp", "get", "-n", "0", "-until-eof", "-keep-going", "-summary", "-stats", "-new-conn",
			"-interval", "50ms", "-timeout", "10s", "-expect-body", mtls, "http://web:8080/")
		done <- result{o, e, err}
	}()
	t.Cleanup(func() { closeStdin.Close() })
	select {
	case r := <-done:
		t.Fatalf("the load generator stopped before the rotation: %v\nstdout: %s\nstderr: %s", r.err, r.stdout, r.stderr)
	case <-time.After(5 * time.Second):
	}

	dir := filepath.Join(t.TempDir(), "anchor-b")
	start := time.Now()
	rot := f.RunMesh(ctx, "identity", "rotate-anchors", "--generate-dir", dir, "--timeout", "5m")
	took := time.Since(start)
	t.Logf("mesh identity rotate-anchors (%s):\n%s", took.Round(time.Second), rot.Stdout)
	if rot.Err != nil {
		closeStdin.Close()
		r := <-done
		t.Fatalf("rotate-anchors: %v\nload generator meanwhile: %s%s", rot.Err, r.stdout, r.stderr)
	}

	// The rotation returns once the last rollouts are complete; the old pods
	// still drain. Keep the traffic on until they are gone, and a little more.
	pods := meshedPods(t)
	time.Sleep(3 * time.Second)
	closeStdin.Close()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the load generator did not stop within a minute of its stdin closing")
	}
	summary, stats, _ := strings.Cut(strings.TrimSpace(r.stdout), "\n")
	t.Logf("load generator through the rotation: %s (%s)\n%s", summary, took.Round(time.Second), stats)
	if r.err != nil {
		t.Fatalf("requests failed during the rotation: %v\n%s\nfailures:\n%s", r.err, summary, firstLines(r.stderr, 40))
	}
	var ok int
	if _, err := fmt.Sscanf(summary, "%d ok", &ok); err != nil || strings.Contains(summary, "failed") {
		t.Fatalf("load generator summary %q: %v", summary, err)
	}
	if ok < 300 {
		t.Errorf("only %d requests during a %s rotation: not a meaningful load", ok, took.Round(time.Second))
	}
	// The traffic crossed the rollouts: old and new pods of both Deployments answered.
	for _, app := range []string{"web", "server"} {
		if n := len(regexp.MustCompile(`\b`+app+`-[a-z0-9]+-[a-z0-9]+=`).FindAllString(stats, -1)); n <= 2 {
			t.Errorf("%d %s pods answered during the rotation, want more than the 2 it started with (were they restarted?): %s", n, app, stats)
		}
	}

	// The bundle holds only B.
	anchorPEM, err := os.ReadFile(filepath.Join(dir, "anchor.crt"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.ParseCertificates(anchorPEM)
	if err != nil || len(b) != 1 {
		t.Fatalf("%s: %v", filepath.Join(dir, "anchor.crt"), err)
	}
	anchorB := b[0]
	for _, a := range anchorsA {
		if a.Equal(anchorB) {
			t.Fatalf("the generated anchor %q was already in the bundle", anchorB.Subject.CommonName)
		}
	}
	if after := trustBundle(t, f, ctx); len(after) != 1 || !after[0].Equal(anchorB) {
		t.Errorf("bundle after the rotation holds %d anchors %v, want only B %q", len(after), commonNames(after), anchorB.Subject.CommonName)
	}

	// Every meshed pod trusts only B and presents a certificate that chains to B, not to A.
	rootsB, rootsA := x509.NewCertPool(), x509.NewCertPool()
	rootsB.AddCert(anchorB)
	for _, a := range anchorsA {
		rootsA.AddCert(a)
	}
	for _, p := range pods {
		if got := proxyTrustAnchors(t, &p); len(got) != 1 || !got[0].Equal(anchorB) {
			t.Errorf("%s: proxy started with anchors %v, want only B", p.Name, commonNames(got))
		}
		chain := proxyCertificate(t, f, ctx, ns, p.Name)
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: rootsB, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		if _, err := chain[0].Verify(opts); err != nil {
			t.Errorf("%s: certificate %s (issuer %q) does not chain to B: %v", p.Name, chain[0].SerialNumber, chain[0].Issuer.CommonName, err)
			continue
		}
		opts.Roots = rootsA
		if _, err := chain[0].Verify(opts); err == nil {
			t.Errorf("%s: certificate %s still chains to A", p.Name, chain[0].SerialNumber)
		}
		t.Logf("%s: %s, issued by %q at %s, chains to B %q", p.Name, chain[0].DNSNames, chain[0].Issuer.CommonName,
			chain[0].NotBefore.Format(time.TimeOnly), anchorB.Subject.CommonName)
	}
	checkMTLS(t, "after the rotation")
}

// trustBundle reads the anchors of the bundle ConfigMap.
func trustBundle(t *testing.T, f *framework.Framework, ctx context.Context) []*x509.Certificate {
	t.Helper()
	cm, err := f.Client.CoreV1().ConfigMaps(framework.ControlPlaneNamespace).Get(ctx, "conduit-identity-trust-roots", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates([]byte(cm.Data["ca-bundle.crt"]))
	if err != nil {
		t.Fatalf("ConfigMap conduit-identity-trust-roots: %v", err)
	}
	return certs
}

// bareMeshedPods lists the running meshed pods outside ns that no workload
// owns (an earlier test's client pods, until their namespace is gone).
func bareMeshedPods(ctx context.Context, f *framework.Framework, ns string) ([]string, error) {
	l, err := f.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "conduit.dev/control-plane-ns=" + framework.ControlPlaneNamespace})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range l.Items {
		if p.Namespace == ns || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if metav1.GetControllerOf(&p) == nil {
			out = append(out, p.Namespace+"/"+p.Name)
		}
	}
	return out, nil
}

// proxyTrustAnchors parses the anchors the injector gave a pod's proxy.
func proxyTrustAnchors(t *testing.T, p *corev1.Pod) []*x509.Certificate {
	t.Helper()
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name != "conduit-proxy" {
			continue
		}
		for _, e := range c.Env {
			if e.Name == "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS" {
				certs, err := pki.ParseCertificates([]byte(e.Value))
				if err != nil {
					t.Fatalf("%s: CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS: %v", p.Name, err)
				}
				return certs
			}
		}
	}
	t.Fatalf("%s: no conduit-proxy container with CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS", p.Name)
	return nil
}

func commonNames(certs []*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "") + fmt.Sprintf("... (%d more lines)\n", len(lines)-n)
}
