//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

const (
	// perRun is how many requests (or gRPC calls) a client sends on its one
	// connection in a run.
	perRun = 60
	// minPerPod is how many of a run's requests each of the three equal
	// pods must answer: a few each, not one by chance.
	minPerPod = 3
	// slowDelay is how long the slow pod of Service "mixed" holds each
	// answer (testapp serve -delay): far above the fast pods' latency
	// through both proxies (a few ms), so that peak-EWMA cannot mistake it.
	slowDelay = 150 * time.Millisecond
	// mixedRequests is how many keep-alive requests the meshed client sends
	// to Service "mixed"; of which the slow pod may answer slowMax at most.
	mixedRequests = 100
	slowMax       = mixedRequests / 10
)

// balanceApps: in a meshed namespace, Deployment "server" (3 replicas of
// testapp serve, HTTP on 8080, gRPC echo on 9090) behind Service "server";
// Deployments "fast" (2 replicas) and "slow" (1 replica answering each
// request after slowDelay), whose pods all carry balance=mixed, behind
// Service "mixed", which selects that label; and a client pod.
func balanceApps(image string) string {
	mixed := func(name string, replicas int, args ...string) string {
		d := echoDeployment(name, image, args)
		d = strings.Replace(d, "  replicas: 1\n", fmt.Sprintf("  replicas: %d\n", replicas), 1)
		return withPodLabels(d, name, "balance: mixed")
	}
	server := strings.Replace(echoDeployment("server", image, []string{"-grpc-addr", ":9090"}, "grpc:9090"),
		"  replicas: 1\n", "  replicas: 3\n", 1)
	return manifests(
		server,
		`apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  selector: {app: server}
  ports: [{name: http, port: 8080, targetPort: http}, {name: grpc, port: 9090, targetPort: grpc}]
`,
		mixed("fast", 2),
		mixed("slow", 1, "-delay", slowDelay.String()),
		`apiVersion: v1
kind: Service
metadata: {name: mixed}
spec:
  selector: {balance: mixed}
  ports: [{name: http, port: 8080, targetPort: http}]
`,
		sleeperPod("client", image))
}

// withPodLabels adds labels ("key: value, ...") to the pod template of
// echoDeployment's manifest d of the Deployment named name, beside app=name
// (still the Deployment's selector): for a Service that selects the pods of
// several Deployments. Apply it after withPodAnnotations, which looks for
// the template's labels as echoDeployment writes them.
func withPodLabels(d, name, labels string) string {
	old := "      labels: {app: " + name + "}"
	if !strings.Contains(d, old) {
		panic("withPodLabels: no pod template labelled app=" + name + " in\n" + d)
	}
	return strings.Replace(d, old, "      labels: {app: "+name+", "+labels+"}", 1)
}

// TestRequestsBalancedPerRequest: the client's proxy balances every
// request, not every connection, over a Service's endpoints, with power of
// two choices over peak-EWMA latency (proxy/balance/balance.go). A meshed
// client's requests on ONE keep-alive connection (HTTP/1.1, and gRPC calls
// on one channel) are answered by all three pods of a Service; the same
// requests from an unmeshed client, which kube-proxy balances per
// connection, by one pod only: the spread is the proxy's doing. And the
// balancing follows latency: behind a Service with two fast pods and one
// that takes 150 ms to answer, the slow pod answers at most a tenth of a
// meshed client's keep-alive requests, where kube-proxy (a new connection
// per request) gives it about a third.
//
// What peak-EWMA does with sequential requests (one at a time, so nothing
// is pending when the next is balanced) shapes the checks. Each request
// goes to the cheaper of two endpoints picked at random, an endpoint's
// cost being its latency, raised at once by a slower answer and decaying
// with a 10 s time constant. Equal pods are not served in turn: the one
// whose recent answers were the slowest loses every pair it is in, until
// its cost has decayed below the others' (after 10 s × ln(its peak / their
// latency): up to about a minute after a first request that waited for the
// connection's mTLS handshake). Within a run of 60 requests (well under a
// second) the ranking hardly changes: the cheapest pod answers about two
// thirds, the next one a third (it wins its pairs with the dearest), the
// dearest maybe none. So every run must be answered by at least two pods,
// and runs are repeated until one is answered by all three, each at least
// minPerPod times.
func TestRequestsBalancedPerRequest(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, "balance")
	plain := f.NewNamespace(t, "balance-plain", nil)
	image := f.Image("testapp")
	// Pods admitted while the injector restarts (other tests reinstall the
	// mesh) would not be meshed.
	f.WaitPodsReady(t, framework.ControlPlaneNamespace, "conduit.dev/control-plane-component=injector", 1, 2*time.Minute)
	f.Apply(t, ns, balanceApps(image))
	f.Apply(t, plain, sleeperPod("plain", image))

	readyMeshed := func(selector string, n int) []string {
		t.Helper()
		var names []string
		for _, p := range f.WaitPodsReady(t, ns, selector, n, 3*time.Minute) {
			if !injected(&p) {
				t.Fatalf("pod %s has no proxy: admitted while the injector was unreachable?", p.Name)
			}
			names = append(names, p.Name)
		}
		slices.Sort(names)
		return names
	}
	servers := readyMeshed("app=server", 3)
	fast := readyMeshed("app=fast", 2)
	slow := readyMeshed("app=slow", 1)[0]
	readyMeshed("app=client", 1)
	f.WaitPodsReady(t, plain, "app=plain", 1, 2*time.Minute)
	f.WaitEndpoints(t, ns, "server", 3, time.Minute)
	f.WaitEndpoints(t, ns, "mixed", 3, time.Minute)

	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	// In every meshed answer: the server's proxy saw the client's proxy's
	// mTLS identity, so the request went through both proxies.
	mtls := fmt.Sprintf(`"Conduit-Client-Id":[%q]`, clientID)
	fqdn := func(svc, port string) string { return svc + "." + ns + ".svc.cluster.local:" + port }

	// get runs testapp get -summary -stats in pod (of namespace pns, its
	// container named as the pod) with args.
	get := func(ctx context.Context, pns, pod string, args ...string) (getStats, error) {
		cmd := append([]string{"testapp", "get", "-summary", "-stats", "-timeout", "5s"}, args...)
		out, stderr, err := f.ExecE(ctx, pns, pod, pod, nil, cmd...)
		if err != nil {
			return getStats{}, fmt.Errorf("%s: %w: %s %s", strings.Join(cmd, " "), err, out, firstLines(stderr, 10))
		}
		return parseGetStats(out)
	}
	// grpcCalls runs testapp grpc -calls n in pod (of pns) against addr.
	grpcCalls := func(ctx context.Context, pns, pod, addr string, n int) (grpcCallsOut, error) {
		cmd := []string{"testapp", "grpc", "-calls", strconv.Itoa(n), "-size", "100", "-timeout", "30s", addr}
		out, stderr, err := f.ExecE(ctx, pns, pod, pod, nil, cmd...)
		if err != nil {
			return grpcCallsOut{}, fmt.Errorf("%s: %w: %s %s", strings.Join(cmd, " "), err, out, firstLines(stderr, 10))
		}
		var r grpcCallsOut
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return grpcCallsOut{}, fmt.Errorf("%s printed %q: %w", strings.Join(cmd, " "), out, err)
		}
		if r.Calls != n {
			return r, fmt.Errorf("%s: %d calls answered, want %d", strings.Join(cmd, " "), r.Calls, n)
		}
		return r, nil
	}

	// Until discovery knows a Service, the client's proxy forwards to the
	// original destination without mTLS (-expect-body fails). Each endpoint
	// of each Service is first reached here, so that the meshed runs below
	// start with every connection between the proxies made, and a while
	// after the slow answers of their handshakes.
	warm := func(what string, pods []string, run func(context.Context) (map[string]int, error)) {
		t.Helper()
		seen := map[string]int{}
		f.WaitFor(t, what+": meshed answers with mTLS from each of "+strings.Join(pods, ", "), 2*time.Minute, func(ctx context.Context) (bool, error) {
			got, err := run(ctx)
			if err != nil {
				return false, err
			}
			for p, n := range got {
				if !slices.Contains(pods, p) {
					t.Fatalf("%s: an answer from %q, which is not one of %v", what, p, pods)
				}
				seen[p] += n
			}
			if len(seen) < len(pods) {
				return false, fmt.Errorf("answers so far %v", seen)
			}
			return true, nil
		})
	}
	warm("HTTP to server", servers, func(ctx context.Context) (map[string]int, error) {
		r, err := get(ctx, ns, "client", "-n", "10", "-expect-body", mtls, "http://server:8080/")
		return r.pods, err
	})
	warm("gRPC to server", servers, func(ctx context.Context) (map[string]int, error) {
		r, err := grpcCalls(ctx, ns, "client", "server:9090", 10)
		if err == nil && r.ClientIDs[clientID] != r.Calls {
			err = fmt.Errorf("the servers saw client ids %v, want %s on all %d calls (mTLS)", r.ClientIDs, clientID, r.Calls)
		}
		return r.Pods, err
	})
	warm("HTTP to mixed", append(slices.Clone(fast), slow), func(ctx context.Context) (map[string]int, error) {
		r, err := get(ctx, ns, "client", "-n", "10", "-expect-body", mtls, "http://mixed:8080/")
		return r.pods, err
	})

	// everyPod repeats run (perRun requests on one connection, meshed)
	// until one run was answered by each of servers at least minPerPod
	// times; a run answered by one pod only fails the test.
	everyPod := func(t *testing.T, what string, run func(context.Context) (map[string]int, error)) {
		t.Helper()
		var runs []string
		err := framework.Poll(context.Background(), 3*time.Minute, func(ctx context.Context) (bool, error) {
			pods, err := run(ctx)
			if err != nil {
				return false, err
			}
			runs = append(runs, fmt.Sprint(pods))
			for p := range pods {
				if !slices.Contains(servers, p) {
					t.Fatalf("%s: an answer from %q, which is not one of %v", what, p, servers)
				}
			}
			if len(pods) < 2 {
				t.Fatalf("%s: all %d requests of one connection answered by %v: the client's proxy sent them all to one endpoint, as if it balanced connections, not requests (with three healthy endpoints the second cheapest wins a third of the pairs)", what, perRun, pods)
			}
			for _, p := range servers {
				if pods[p] < minPerPod {
					return false, fmt.Errorf("run %d answered by %v: %s answered fewer than %d (its peak-EWMA cost still above the others')", len(runs), pods, p, minPerPod)
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("%s: no run of %d requests on one connection was answered by each of %v at least %d times: %v\nanswers per pod in each run: %s",
				what, perRun, servers, minPerPod, err, strings.Join(runs, "; "))
		}
		t.Logf("%s: answers per pod in each run of %d on one connection (the last has every pod): %s", what, perRun, strings.Join(runs, "; "))
	}

	t.Run("HTTP/1.1 requests of one keep-alive connection", func(t *testing.T) {
		// Control: kube-proxy sends a connection to one pod, all its requests with it.
		r, err := get(framework.Context(t, time.Minute), plain, "plain", "-n", strconv.Itoa(perRun), "http://"+fqdn("server", "8080")+"/")
		if err != nil {
			t.Fatalf("control, unmeshed client: %v", err)
		}
		t.Logf("control, unmeshed client: %d requests on %d connection(s), answers per pod %v", r.ok, r.conns, r.pods)
		if r.conns != 1 || len(r.pods) != 1 {
			t.Fatalf("control: an unmeshed client's %d keep-alive requests went on %d connections and were answered by %v, want one connection answered by one pod (kube-proxy balances connections): without it the meshed runs prove nothing", r.ok, r.conns, r.pods)
		}

		everyPod(t, "meshed HTTP/1.1", func(ctx context.Context) (map[string]int, error) {
			r, err := get(ctx, ns, "client", "-n", strconv.Itoa(perRun), "-expect-body", mtls, "http://server:8080/")
			if err != nil {
				return nil, err
			}
			if r.conns != 1 {
				t.Fatalf("the meshed client's %d keep-alive requests went on %d connections, want 1 (did its proxy close the connection?); answers per pod %v", r.ok, r.conns, r.pods)
			}
			return r.pods, nil
		})
	})

	t.Run("gRPC calls of one channel", func(t *testing.T) {
		r, err := grpcCalls(framework.Context(t, time.Minute), plain, "plain", fqdn("server", "9090"), perRun)
		if err != nil {
			t.Fatalf("control, unmeshed client: %v", err)
		}
		t.Logf("control, unmeshed client: %d calls on %d connection(s), answers per pod %v", r.Calls, r.Connections, r.Pods)
		if r.Connections != 1 || len(r.Pods) != 1 {
			t.Fatalf("control: an unmeshed client's %d calls on one channel went on %d connections and were answered by %v, want one connection answered by one pod (kube-proxy balances connections)", r.Calls, r.Connections, r.Pods)
		}

		everyPod(t, "meshed gRPC", func(ctx context.Context) (map[string]int, error) {
			r, err := grpcCalls(ctx, ns, "client", "server:9090", perRun)
			if err != nil {
				return nil, err
			}
			if r.Connections != 1 {
				t.Fatalf("the meshed client's channel opened %d connections for %d calls, want 1; answers per pod %v", r.Connections, r.Calls, r.Pods)
			}
			if r.ClientIDs[clientID] != r.Calls {
				t.Fatalf("the servers saw client ids %v, want %s on all %d calls (mTLS between the proxies)", r.ClientIDs, clientID, r.Calls)
			}
			return r.Pods, nil
		})
	})

	t.Run("slow pod avoided", func(t *testing.T) {
		// Control: a new connection per request, which kube-proxy sends to
		// a pod at random: the slow pod gets about a third. Asserted
		// loosely, a tenth at least (fewer happens by chance about once in
		// 10^7 runs): it shows that the slow pod is an endpoint that
		// answers, so that the meshed client's few answers from it are the
		// proxy's choice.
		const controlRequests = 90
		c, err := get(framework.Context(t, 2*time.Minute), plain, "plain", "-new-conn", "-n", strconv.Itoa(controlRequests), "http://"+fqdn("mixed", "8080")+"/")
		if err != nil {
			t.Fatalf("control, unmeshed client: %v", err)
		}
		t.Logf("control, unmeshed client, a new connection per request: answers per pod %v (slow: %s), %s", c.pods, slow, c.latency)
		if c.pods[slow] < controlRequests/10 {
			t.Errorf("control: the slow pod %s answered %d of an unmeshed client's %d requests on new connections (answers per pod %v), want about a third: is it an endpoint of Service mixed?", slow, c.pods[slow], controlRequests, c.pods)
		}

		// Meshed, one keep-alive connection. Once the slow pod has answered
		// (it did while warming up), its cost is at least 150 ms; it is
		// picked again only when that has decayed below a fast pod's (a few
		// ms), some 30-45 s later, while the requests take about a second:
		// it answers none, or one if its cost has decayed meanwhile. Each
		// fast pod wins its pairs with the slow one: a third at least.
		r, err := get(framework.Context(t, 2*time.Minute), ns, "client", "-n", strconv.Itoa(mixedRequests), "-expect-body", mtls, "http://mixed:8080/")
		if err != nil {
			t.Fatalf("meshed client: %v", err)
		}
		t.Logf("meshed client, one keep-alive connection: answers per pod %v (slow: %s), %s", r.pods, slow, r.latency)
		if r.conns != 1 {
			t.Errorf("the meshed client's %d keep-alive requests went on %d connections, want 1", r.ok, r.conns)
		}
		if r.pods[slow] > slowMax {
			t.Errorf("the slow pod %s (%v per answer) answered %d of the meshed client's %d requests, want %d at most: the client's proxy did not avoid it (answers per pod %v; at random it gets a third)", slow, slowDelay, r.pods[slow], mixedRequests, slowMax, r.pods)
		}
		for _, p := range fast {
			if r.pods[p] < mixedRequests/10 {
				t.Errorf("the fast pod %s answered %d of the meshed client's %d requests, want a third or so (answers per pod %v): both fast pods should share them", p, r.pods[p], mixedRequests, r.pods)
			}
		}
		if n := r.pods[fast[0]] + r.pods[fast[1]] + r.pods[slow]; n != mixedRequests {
			t.Errorf("answers per pod %v: %d from %v and %s, want all %d", r.pods, n, fast, slow, mixedRequests)
		}
	})
}

// getStats is what testapp get -summary -stats printed: "N ok", the
// latency line, "pods a=N b=M …" and "connections N".
type getStats struct {
	ok      int
	latency string
	pods    map[string]int
	conns   int
}

func parseGetStats(out string) (getStats, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var s getStats
	if len(lines) != 4 {
		return s, fmt.Errorf("testapp get -summary -stats printed %q, want 4 lines", out)
	}
	if _, err := fmt.Sscanf(lines[0], "%d ok", &s.ok); err != nil || strings.Contains(lines[0], "failed") {
		return s, fmt.Errorf("summary %q: %v", lines[0], err)
	}
	s.latency = lines[1]
	pods, ok := strings.CutPrefix(lines[2], "pods")
	if !ok {
		return s, fmt.Errorf("pods line %q", lines[2])
	}
	s.pods = map[string]int{}
	for _, kv := range strings.Fields(pods) {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			return s, fmt.Errorf("pods line %q: %w", lines[2], err)
		}
		s.pods[k] = n
	}
	if _, err := fmt.Sscanf(lines[3], "connections %d", &s.conns); err != nil {
		return s, fmt.Errorf("connections line %q: %w", lines[3], err)
	}
	if n := sum(s.pods); n != s.ok {
		return s, fmt.Errorf("%d answers by pod (%v) for %d requests: an answer without X-Testapp-Pod?", n, s.pods, s.ok)
	}
	return s, nil
}

// grpcCallsOut is what testapp grpc -calls printed.
type grpcCallsOut struct {
	Calls       int            `json:"calls"`
	Pods        map[string]int `json:"pods"`
	ClientIDs   map[string]int `json:"clientIds"`
	Connections int            `json:"connections"`
}

func sum(m map[string]int) int {
	n := 0
	for v := range maps.Values(m) {
		n += v
	}
	return n
}
