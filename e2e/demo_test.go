//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// demoNS is the namespace of demo/k8s/demo.yaml.
const demoNS = "conduit-demo"

// demoDeployments are the Deployments of demo/k8s/demo.yaml; the first three
// serve and are what `mesh viz stat` must show.
var demoDeployments = []string{"quotes", "counter", "web", "loadgen"}

// demoClient is a meshed pod of the demo namespace with a curl-like tool:
// the demo image has no shell, so the test calls the front end from here.
// Arguments: name, pod annotations (a YAML flow mapping), image.
const demoClient = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: %[1]s, namespace: conduit-demo}
---
apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  namespace: conduit-demo
  labels: {app: %[1]s}
  annotations: %[2]s
spec:
  serviceAccountName: %[1]s
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: %[3]s
    imagePullPolicy: IfNotPresent
    args: [sleep]
    securityContext:
      runAsNonRoot: true
      runAsUser: 65532
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {drop: ["ALL"]}
`

// demoStatRow is one row of `mesh viz stat -o json`.
type demoStatRow struct {
	Name        string   `json:"name"`
	MeshedPods  int      `json:"meshedPods"`
	TotalPods   int      `json:"totalPods"`
	SuccessRate *float64 `json:"successRate"`
	RPS         *float64 `json:"rps"`
	TLSRate     *float64 `json:"tlsRate"`
}

func (r demoStatRow) String() string {
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatFloat(*p, 'f', 3, 64)
	}
	return fmt.Sprintf("%s meshed %d/%d rps %s success %s tls %s", r.Name, r.MeshedPods, r.TotalPods, f(r.RPS), f(r.SuccessRate), f(r.TLSRate))
}

// TestDemo follows the getting-started path (make demo, README "Quick start",
// docs/getting-started.md) as a user does: install the core and check it,
// install viz, deploy the demo app, and see it meshed: every pod injected, the
// front end authenticating its caller over mTLS, the proxies counting TLS
// requests, and `mesh viz stat` showing the three services with traffic and
// the counter's configured failures.
func TestDemo(t *testing.T) {
	f := framework.New(t)
	// Registered first so that it runs after the framework has collected the
	// artifacts of a failure: remove the demo namespace (one left by `make
	// demo` is replaced at the start) and viz if this test installed it.
	var createdDemo, createdViz bool
	t.Cleanup(func() {
		if os.Getenv("E2E_KEEP_NAMESPACES") == "1" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if createdDemo {
			f.DeleteNamespace(t, demoNS, false)
		}
		if createdViz {
			if r := f.RunMesh(ctx, "viz", "uninstall"); r.Err == nil {
				f.RunKubectl(ctx, r.Stdout, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
			}
		}
	})
	nsExists := func(name string) bool {
		_, err := f.Client.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
		return err == nil
	}
	createdDemo, createdViz = !nsExists(demoNS), !nsExists("conduit-viz")

	// 1. The core: mesh install --crds | kubectl apply; mesh install | kubectl apply; mesh check.
	f.InstallMesh(t)
	ctx := framework.Context(t, 20*time.Minute)
	if r := f.RunMesh(ctx, "check", "--wait", "3m"); r.Err != nil {
		t.Fatalf("mesh check after install: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}

	// 2. viz: mesh viz install | kubectl apply -f -, as in hack/demo.sh.
	// mesh finds mesh-viz next to itself (make build puts both in bin/).
	t.Setenv("MESH_PLUGINS_DIR", filepath.Dir(f.Mesh))
	f.RequireMesh(t, "viz", "stat")
	f.CollectOnFailure(t, "conduit-viz", demoNS)
	manifests := f.MeshCmd(t, "viz", "install", "--set", "image.registry="+f.Registry, "--set", "image.tag="+f.Tag)
	f.KubectlCmd(t, manifests, "apply", "-f", "-")
	if !createdViz {
		// Its proxies were injected with the trust anchors of an earlier control plane.
		f.KubectlCmd(t, "", "-n", "conduit-viz", "rollout", "restart", "deployment")
	}
	for _, d := range []string{"prometheus", "metrics-api", "web"} {
		f.WaitRollout(t, "conduit-viz", "deployment/"+d, 5*time.Minute)
	}
	f.MeshCmd(t, "extensions", "allow", "viz")

	// 3. The demo: kubectl apply -f demo/k8s/demo.yaml. A namespace left by an
	// earlier run has proxies certified by an earlier control plane: start afresh.
	if !createdDemo {
		t.Logf("replacing the %s namespace left by an earlier run", demoNS)
		f.DeleteNamespace(t, demoNS, true)
	}
	demo, err := os.ReadFile(filepath.Join("..", "demo", "k8s", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.ReplaceAll(string(demo), "localhost/conduit/demo:dev", f.Image("demo"))
	f.KubectlCmd(t, yaml, "apply", "-f", "-")
	createdDemo = true
	for _, d := range demoDeployments {
		f.WaitRollout(t, demoNS, "deployment/"+d, 4*time.Minute)
	}

	// 4. Every demo pod is injected and its proxy is running.
	for _, d := range demoDeployments {
		pods := f.DeploymentPods(t, demoNS, d)
		if len(pods) == 0 {
			t.Errorf("deployment %s has no pod", d)
		}
		for i := range pods {
			if err := demoMeshed(&pods[i]); err != nil {
				t.Errorf("%s: %v", d, err)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 5a. The front end answers a meshed caller through its Service, and its
	// inbound proxy authenticated the caller's identity (mTLS): with HTTP/1
	// carried over HTTP/2 between the proxies (the default), and as pooled
	// HTTP/1.1 (annotation config.conduit.dev/proxy-http1-transport: http1).
	for _, client := range []struct{ name, annotations, transport string }{
		{name: "demo-client", annotations: "{}"},
		{name: "demo-client-h1", annotations: `{config.conduit.dev/proxy-http1-transport: http1}`, transport: "http1"},
	} {
		t.Run("mTLS identity through the web Service/"+client.name, func(t *testing.T) {
			demoCallWeb(t, f, client.name, client.annotations, client.transport)
		})
	}

	// 5b. The proxies count requests over TLS.
	t.Run("proxy metrics show TLS requests", func(t *testing.T) {
		for _, d := range []string{"web", "counter", "quotes"} {
			pods := f.DeploymentPods(t, demoNS, d)
			demoWait(t, d+"'s proxy to count inbound TLS requests", 2*time.Minute, 3*time.Second, func(ctx context.Context) error {
				metrics, err := demoProxyMetrics(ctx, t, f, pods[0].Name)
				if err != nil {
					return err
				}
				if n, lines := demoRequests(metrics, `direction="inbound"`, `tls="true"`); n == 0 {
					return fmt.Errorf("%s: no request_total{direction=\"inbound\",tls=\"true\"} > 0 in:\n%s", pods[0].Name, strings.Join(lines, "\n"))
				}
				return nil
			})
		}
		// The front end's calls to both backends leave over mTLS.
		pods := f.DeploymentPods(t, demoNS, "web")
		metrics, err := demoProxyMetrics(framework.Context(t, time.Minute), t, f, pods[0].Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, dst := range []string{"quotes", "counter"} {
			if n, lines := demoRequests(metrics, `direction="outbound"`, `tls="true"`, `dst_deployment="`+dst+`"`); n == 0 {
				t.Errorf("web's proxy counts no outbound TLS request to %s:\n%s", dst, strings.Join(lines, "\n"))
			}
		}
	})

	// 5c. mesh viz stat shows the three services meshed, with traffic, and the
	// counter's failures (failure rate 0.1 in demo.yaml).
	t.Run("mesh viz stat", func(t *testing.T) {
		var last string
		demoWait(t, "mesh viz stat to show the demo's traffic", 4*time.Minute, 5*time.Second, func(ctx context.Context) error {
			r := f.RunMesh(ctx, "viz", "stat", "deploy", "-n", demoNS, "-o", "json")
			if r.Err != nil {
				return fmt.Errorf("mesh viz stat: %w: %s", r.Err, r.Stderr)
			}
			var rows []demoStatRow
			if err := json.Unmarshal([]byte(r.Stdout), &rows); err != nil {
				return fmt.Errorf("stat output %q: %w", r.Stdout, err)
			}
			byName := map[string]demoStatRow{}
			var s []string
			for _, row := range rows {
				byName[row.Name] = row
				s = append(s, row.String())
			}
			last = strings.Join(s, "\n")
			for _, d := range []string{"web", "quotes", "counter"} {
				row, ok := byName[d]
				if !ok || row.TotalPods == 0 || row.MeshedPods != row.TotalPods || row.RPS == nil || *row.RPS <= 0 || row.SuccessRate == nil {
					return fmt.Errorf("%s not meshed with traffic yet; stat:\n%s", d, last)
				}
				// Every caller is meshed: every request arrives over mTLS.
				if row.TLSRate == nil || *row.TLSRate < 1 {
					return fmt.Errorf("%s: not every request arrives over mTLS (tls rate below 1); stat:\n%s", d, last)
				}
			}
			if c := byName["counter"]; *c.SuccessRate >= 1 || *c.SuccessRate < 0.5 {
				return fmt.Errorf("counter success rate %.3f, want about 0.9 (failure rate 0.1); stat:\n%s", *c.SuccessRate, last)
			}
			return nil
		})
		t.Logf("mesh viz stat deploy -n %s:\n%s", demoNS, last)
		// The table a user reads at the end of make demo.
		table := f.MeshCmd(t, "viz", "stat", "deploy", "-n", demoNS)
		for _, d := range []string{"web", "quotes", "counter"} {
			if !strings.Contains(table, d) {
				t.Errorf("stat table lacks %s:\n%s", d, table)
			}
		}
	})
}

// demoCallWeb starts the meshed client pod name and calls the front end
// from it: the answer must be complete and name the client's identity, and
// the client's proxy must count its requests to web as TLS. transport, when
// set, is the CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT the injector must have
// given the client's proxy; GOMAXPROCS must be 1 (no CPU limit).
func demoCallWeb(t *testing.T, f *framework.Framework, name, annotations, transport string) {
	f.Apply(t, demoNS, fmt.Sprintf(demoClient, name, annotations, f.Image("testapp")))
	pods := f.WaitPodsReady(t, demoNS, "app="+name, 1, 3*time.Minute)
	if err := demoMeshed(&pods[0]); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	proxyEnv := func(name string) string {
		v, _ := framework.ProxyEnv(&pods[0], name)
		return v
	}
	if got := proxyEnv("CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT"); got != transport {
		t.Errorf("%s's proxy has CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT=%q, want %q", name, got, transport)
	}
	// No proxy CPU limit by default: the injector gives the proxy one core.
	if got := proxyEnv("GOMAXPROCS"); got != "1" {
		t.Errorf("%s's proxy has GOMAXPROCS=%q, want 1 (no proxy CPU limit)", name, got)
	}
	want := fmt.Sprintf("%s.%s.serviceaccount.identity.%s.cluster.local", name, demoNS, framework.ControlPlaneNamespace)
	var answer struct {
		Quote, QuoteServedBy, CounterServedBy, ClientID string
	}
	// The counter fails 10 % of its calls (the front end answers 502 then),
	// and a new pod's first requests may race its proxy's discovery: retry.
	demoWait(t, "web to answer the meshed client", 2*time.Minute, time.Second, func(ctx context.Context) error {
		out, _, err := f.ExecE(ctx, demoNS, pods[0].Name, "client", nil,
			"testapp", "get", "http://web."+demoNS+".svc.cluster.local:8080/api/quote")
		if err != nil {
			return fmt.Errorf("%w; output %q", err, out)
		}
		if err := json.Unmarshal([]byte(out), &answer); err != nil {
			return fmt.Errorf("web answer %q: %w", out, err)
		}
		return nil
	})
	t.Logf("web answered: %+v", answer)
	if answer.ClientID != want {
		t.Errorf("web saw client identity %q, want %q (the header conduit-client-id set by its inbound proxy)", answer.ClientID, want)
	}
	if answer.Quote == "" || answer.QuoteServedBy == "" || answer.CounterServedBy == "" {
		t.Errorf("incomplete answer %+v: the front end did not reach both backends", answer)
	}
	metrics, err := demoProxyMetrics(framework.Context(t, time.Minute), t, f, pods[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if n, lines := demoRequests(metrics, `direction="outbound"`, `tls="true"`, `dst_deployment="web"`); n == 0 {
		t.Errorf("%s's proxy counts no outbound TLS request to web:\n%s", name, strings.Join(lines, "\n"))
	}
}

// demoMeshed says why p is not a meshed pod: injected by the injector, with
// the proxy as a running native sidecar.
func demoMeshed(p *corev1.Pod) error {
	if s := p.Annotations["conduit.dev/inject-status"]; s != "injected" {
		return fmt.Errorf("pod %s: annotation conduit.dev/inject-status = %q, want injected", p.Name, s)
	}
	found := false
	for _, c := range p.Spec.InitContainers {
		if c.Name == "conduit-proxy" {
			found = c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		}
	}
	if !found {
		return fmt.Errorf("pod %s has no conduit-proxy sidecar (init containers %d)", p.Name, len(p.Spec.InitContainers))
	}
	// viz's injector hook enables tap. The pod was created right after
	// `mesh extensions allow viz` returned, which waits for the injector to
	// run the hook.
	if tap, _ := framework.ProxyEnv(p, "CONDUIT_PROXY_TAP_ENABLED"); tap != "true" {
		return fmt.Errorf("pod %s: its proxy was injected without viz's hook (no CONDUIT_PROXY_TAP_ENABLED=true)", p.Name)
	}
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == "conduit-proxy" && (s.Started == nil || !*s.Started || s.State.Running == nil) {
			return fmt.Errorf("pod %s: conduit-proxy is not running: %+v", p.Name, s.State)
		}
	}
	return nil
}

// demoProxyMetrics fetches a demo pod's proxy metrics the way a user does,
// with `mesh diagnostics proxy-metrics`, or through a port-forward to the
// admin port 4191 when the CLI lacks the command.
func demoProxyMetrics(ctx context.Context, t *testing.T, f *framework.Framework, pod string) (string, error) {
	if ok, _ := f.MeshHas("diagnostics", "proxy-metrics"); ok {
		r := f.RunMesh(ctx, "diagnostics", "proxy-metrics", "-n", demoNS, pod)
		if r.Err != nil {
			return "", fmt.Errorf("mesh diagnostics proxy-metrics %s: %w: %s", pod, r.Err, r.Stderr)
		}
		return r.Stdout, nil
	}
	port := f.PortForward(t, demoNS, pod, 4191)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics of %s: %d %w", pod, resp.StatusCode, err)
	}
	return string(b), nil
}

// demoRequests sums the request_total samples that carry every label of
// want, and returns every request_total line (for the failure message).
func demoRequests(metrics string, want ...string) (float64, []string) {
	var sum float64
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(metrics))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "request_total{") {
			continue
		}
		lines = append(lines, line)
		i := strings.LastIndexByte(line, '}')
		labels, value := line[:i+1], strings.Fields(line[i+1:])
		match := len(value) > 0
		for _, w := range want {
			match = match && strings.Contains(labels, w)
		}
		if !match {
			continue
		}
		if v, err := strconv.ParseFloat(value[0], 64); err == nil {
			sum += v
		}
	}
	return sum, lines
}

// demoWait calls cond every interval until it returns nil, and fails the test
// with cond's last error at the deadline.
func demoWait(t *testing.T, desc string, timeout, interval time.Duration, cond func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 30*time.Second)
		err := cond(actx)
		acancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("e2e: waiting %s for %s: %v", timeout, desc, err)
		case <-time.After(interval):
		}
	}
}
