//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/cli/healthcheck"
	"github.com/conduit-mesh/conduit/e2e/framework"
	"github.com/conduit-mesh/conduit/pkg/subnets"
	proxyconfig "github.com/conduit-mesh/conduit/proxy/config"
)

// outageIdleTimeout is the proxies' discovery idle timeout during the test,
// set for the whole mesh with the Helm value proxy.discovery.idleTimeout:
// short, so that the test can have a target's streams closed before the
// outage.
const outageIdleTimeout = 10 * time.Second

// outageApps is a meshed echo server behind two Services, server and idle,
// and two meshed clients: client, and nokeep, whose proxy keeps nothing of a
// target whose streams were closed (annotation
// proxy-discovery-last-known-max-age 0s), the control.
func outageApps(image string) string {
	idle := `apiVersion: v1
kind: Service
metadata: {name: idle}
spec:
  selector: {app: server}
  ports: [{name: http, port: 8080, targetPort: http}]
`
	return manifests(echoDeployment("server", image, nil), httpService("server"), idle,
		sleeperPod("client", image), sleeperPod("nokeep", image, `config.conduit.dev/proxy-discovery-last-known-max-age: "0s"`))
}

// TestControlPlaneOutage: with the destination and identity controllers gone,
// meshed traffic goes on with the endpoints and certificates the proxies
// already have, over mTLS, on new connections too, and so does traffic to a
// Service the client had stopped using (its discovery streams closed) from
// what the destination service said of it before; when they come back, the
// proxies reconnect on their own and learn what changed meanwhile.
func TestControlPlaneOutage(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	// The idle timeout of every proxy injected from now on, as an operator
	// would set it; the annotation of nokeep still wins for its own setting.
	f.UpgradeMesh(t, "--set", "proxy.discovery.idleTimeout="+outageIdleTimeout.String())
	t.Cleanup(func() { f.UpgradeMesh(t, "--set", "proxy.discovery.idleTimeout=") })
	ns := meshedNamespace(t, f, "outage")
	f.Apply(t, ns, outageApps(f.Image("testapp")))
	server := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	first := server.Name
	client := f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)[0]
	f.WaitPodsReady(t, ns, "app=nokeep", 1, 3*time.Minute)
	if got := proxyEnv(client, "CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT"); got != outageIdleTimeout.String() {
		t.Fatalf("client's proxy has CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT=%q, want %q from the upgrade's proxy.discovery.idleTimeout", got, outageIdleTimeout)
	}
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"

	// requestsTo sends n requests to a Service on new connections and
	// checks that each went through both proxies with mTLS; it returns the
	// pods that answered.
	requestsTo := func(ctx context.Context, service string, n int) (map[string]int, error) {
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "get", "-new-conn", "-n", strconv.Itoa(n), "http://"+service+":8080/")
		if err != nil {
			return nil, fmt.Errorf("testapp get: %w: %s %s", err, out, stderr)
		}
		pods := map[string]int{}
		for _, e := range decodeEchoes(t, out) {
			if err := e.sawClient(clientID); err != nil {
				return nil, err
			}
			pods[e.Pod]++
		}
		return pods, nil
	}
	// Until discovery knows the Service the client's proxy forwards without mTLS.
	f.WaitFor(t, "meshed requests with mTLS", 2*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := requestsTo(ctx, "server", 1)
		return err == nil, err
	})
	// The idle Service is asked for once by each client, then not until
	// the outage.
	if _, err := requestsTo(context.Background(), "idle", 1); err != nil {
		t.Fatal(err)
	}
	if out, stderr, err := f.ExecE(context.Background(), ns, "nokeep", "nokeep", nil, "testapp", "get", "http://idle:8080/"); err != nil {
		t.Fatalf("nokeep: testapp get: %v: %s %s", err, out, stderr)
	}
	idleUsed := time.Now()

	// The node's address stands for an API outside the cluster: a server of
	// the test's own listens there. The client never calls it before the
	// outage, so its proxy has nothing of it from discovery.
	outside := outsideServer(t, f)
	// mesh diagnostics endpoints says that proxies do not ask about it (and
	// does not say so of a pod's address).
	for addr, want := range map[string]bool{outside: true, net.JoinHostPort(server.Status.PodIP, "8080"): false} {
		var got struct {
			Outside bool `json:"outsideClusterNetworks"`
		}
		out := f.MeshCmd(t, "diagnostics", "endpoints", addr, "-o", "json")
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.Outside != want {
			t.Errorf("mesh diagnostics endpoints %s: %s (%v), want outsideClusterNetworks %v", addr, out, err, want)
		}
	}

	// The real cluster's pod and Service ranges are inside the default
	// networks: mesh check says so, without a warning.
	if c := proxyCheck(t, f, ns, "the cluster networks hold every pod and Service address"); c.Status != healthcheck.Success {
		t.Errorf("mesh check: the cluster networks check is %s: %s", c.Status, c.Error)
	}

	// The outage: both controllers scaled to zero, restored however the test ends.
	restore := f.StopControllers(t, "destination", "identity")

	t.Run("traffic goes on with mTLS while the controllers are gone", func(t *testing.T) {
		pods, err := requestsTo(context.Background(), "server", 20)
		if err != nil {
			t.Fatal(err)
		}
		if pods[first] != 20 {
			t.Fatalf("answers per pod %v, want 20 from %s", pods, first)
		}
	})

	t.Run("an address outside the cluster networks is reached without the destination service", func(t *testing.T) {
		addr := outside
		start := time.Now()
		out, stderr, err := f.ExecE(context.Background(), ns, "client", "client", nil, "testapp", "get", "-n", "5", "-new-conn", "-expect-body", outsideBody, "http://"+addr+"/")
		if err != nil {
			t.Fatalf("testapp get http://%s/ during the outage: %v: %s %s (a 503 means the proxy waited for the destination service)", addr, err, out, stderr)
		}
		t.Logf("5 requests to %s in %v (exec included)", addr, time.Since(start).Round(time.Millisecond))
	})

	t.Run("a Service unused for the idle timeout is reached from what discovery said before", func(t *testing.T) {
		// Its streams close at the reaper's first tick (every half idle
		// timeout) after the idle timeout.
		if wait := time.Until(idleUsed.Add(outageIdleTimeout * 2)); wait > 0 {
			time.Sleep(wait)
		}
		since := metav1.Now()
		start := time.Now()
		pods, err := requestsTo(context.Background(), "idle", 20)
		t.Logf("20 requests to the idle Service in %v (exec included)", time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("%v (without the last known state, the proxy refuses it: 503)", err)
		}
		if pods[first] != 20 {
			t.Fatalf("answers per pod %v, want 20 from %s", pods, first)
		}
		// And the proxy says so: the Service's streams had been closed.
		logs, err := f.Client.CoreV1().Pods(ns).GetLogs("client", &corev1.PodLogOptions{Container: "conduit-proxy", SinceTime: &since}).Do(context.Background()).Raw()
		if err != nil {
			t.Fatal(err)
		}
		var fellBack bool
		for _, line := range strings.Split(string(logs), "\n") {
			if strings.Contains(line, "using what it said before") && strings.Contains(line, "idle."+ns+".svc.cluster.local:8080") {
				fellBack = true
				t.Logf("client proxy: %s", line)
			}
		}
		if !fellBack {
			t.Fatalf("the client's proxy did not log its fallback for idle.%s; its log since the requests:\n%s", ns, logs)
		}
		// Its metrics say so too.
		metrics := f.MeshCmd(t, "diagnostics", "proxy-metrics", "-n", ns, "client")
		if !strings.Contains(metrics, "\ndiscovery_unreachable 1\n") {
			t.Errorf("the client's proxy does not report the destination service unreachable:\n%s", grepLines(metrics, "discovery_"))
		}
		if m := regexp.MustCompile(`\ndiscovery_stale\{kind="endpoints"\} (\d+)\n`).FindStringSubmatch(metrics); m == nil || m[1] == "0" {
			t.Errorf("the client's proxy reports no stale endpoints:\n%s", grepLines(metrics, "discovery_"))
		}
		// The control: a proxy that keeps nothing of the names it stopped
		// using refuses the same Service.
		if out, stderr, err := f.ExecE(context.Background(), ns, "nokeep", "nokeep", nil, "testapp", "get", "http://idle:8080/"); err == nil ||
			!strings.Contains(stderr, "status 503") {
			t.Errorf("nokeep (last-known-max-age 0s): testapp get idle: %v: %s %s; want a 503", err, out, stderr)
		}
		// And `mesh check --proxy` warns of it, naming the pod.
		if res := proxyCheck(t, f, ns, "data-plane proxies reach the destination service"); res.Status != healthcheck.Warn ||
			!strings.Contains(res.Error, ns+"/client: destination service unreachable") {
			t.Errorf("mesh check --proxy during the outage: %s %q, want a warning naming %s/client", res.Status, res.Error, ns)
		}
	})

	t.Run("the proxies reconnect and learn what changed", func(t *testing.T) {
		// A second server replica is asked for while discovery is down
		// (its proxy gets its certificate once identity is back); the
		// client's proxy can only learn of it from the restored
		// destination controller, over a stream it opens again itself.
		f.KubectlCmd(t, "", "-n", ns, "scale", "deployment", "server", "--replicas=2")
		restore()
		f.WaitPodsReady(t, ns, "app=server", 2, 3*time.Minute)
		var last map[string]int
		f.WaitFor(t, "both replicas answering through the client's proxy", 2*time.Minute, func(ctx context.Context) (bool, error) {
			pods, err := requestsTo(ctx, "server", 20)
			last = pods
			return err == nil && len(pods) == 2, err
		})
		t.Logf("answers per pod after the outage: %v", last)
		f.WaitFor(t, "the client's proxy reporting the destination service reachable", time.Minute, func(ctx context.Context) (bool, error) {
			r := f.RunMesh(ctx, "diagnostics", "proxy-metrics", "-n", ns, "client")
			if r.Err != nil {
				return false, r.Err
			}
			if strings.Contains(r.Stdout, "\ndiscovery_unreachable 0\n") {
				return true, nil
			}
			return false, fmt.Errorf("%s", grepLines(r.Stdout, "discovery_"))
		})
	})
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// outsideBody is what outsideServer answers.
const outsideBody = "outside the cluster networks"

// outsideServer serves outsideBody on the node's InternalIP until the test
// ends, and returns its address. The node's address must be outside the
// default cluster networks (the e2e cluster's, 192.0.2.2, is): else the
// test fails, as it could not show what it is for.
func outsideServer(t *testing.T, f *framework.Framework) string {
	t.Helper()
	nodes, err := f.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("nodes: %v", err)
	}
	var ip netip.Addr
	for _, a := range nodes.Items[0].Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err = netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				break
			}
		}
	}
	nets, _ := subnets.Parse(proxyconfig.DefaultClusterNetworks)
	if !ip.IsValid() || subnets.Contains(nets, ip) {
		t.Fatalf("the node's address %v is not outside the default cluster networks %s", ip, proxyconfig.DefaultClusterNetworks)
	}
	l, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, outsideBody)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}
