//go:build e2e

package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// drainSeconds is how long the draining pod keeps serving after it is told
// to terminate (its preStop sleep, before SIGTERM).
const drainSeconds = 25

// TestTerminatingEndpointsServe: a Service whose only pod is terminating but
// still serving (a preStop hook, as in a drain before a scale to zero or a
// one-replica rollout) keeps receiving meshed traffic, as kube-proxy sends
// unmeshed traffic to it (KEP-1669): the destination service falls back to
// serving-and-terminating endpoints when none is ready. Before, it dropped
// the pod the moment it began to terminate, and every meshed request failed
// while the pod still served.
func TestTerminatingEndpointsServe(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	ns := meshedNamespace(t, f, "terminating")
	image := f.Image("testapp")
	server := strings.Replace(echoDeployment("drainer", image, nil),
		"      terminationGracePeriodSeconds: 1\n",
		fmt.Sprintf("      terminationGracePeriodSeconds: %d\n", drainSeconds+10), 1)
	server = strings.Replace(server, "        readinessProbe:",
		fmt.Sprintf("        lifecycle: {preStop: {sleep: {seconds: %d}}}\n        readinessProbe:", drainSeconds), 1)
	f.Apply(t, ns, manifests(server, httpService("drainer"), sleeperPod("client", image)))
	pod := f.WaitPodsReady(t, ns, "app=drainer", 1, 3*time.Minute)[0]
	f.WaitPodsReady(t, ns, "app=client", 1, 2*time.Minute)
	f.WaitEndpoints(t, ns, "drainer", 1, time.Minute)
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	url := "http://drainer:8080/"

	get := func(ctx context.Context) error {
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "get", "-timeout", "3s", url)
		if err != nil {
			return fmt.Errorf("GET %s: %w: %s", url, err, stderr)
		}
		es := decodeEchoes(t, out)
		if len(es) != 1 || es[0].Pod != pod.Name {
			return fmt.Errorf("GET %s answered by %+v, want %s", url, es, pod.Name)
		}
		return es[0].sawClient(clientID)
	}
	f.WaitFor(t, "the drainer through both proxies with mTLS", 2*time.Minute, func(ctx context.Context) (bool, error) {
		err := get(ctx)
		return err == nil, err
	})

	start := time.Now()
	f.KubectlCmd(t, "", "scale", "-n", ns, "deployment/drainer", "--replicas=0")
	// The EndpointSlice says so: the pod terminates and still serves, and
	// no endpoint of the Service is ready.
	f.WaitFor(t, "the drainer's endpoint terminating and serving", 30*time.Second, func(ctx context.Context) (bool, error) {
		slices, err := f.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=drainer"})
		if err != nil {
			return false, err
		}
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				c := ep.Conditions
				if c.Terminating != nil && *c.Terminating && c.Serving != nil && *c.Serving && c.Ready != nil && !*c.Ready {
					return true, nil
				}
			}
		}
		return false, fmt.Errorf("no terminating, serving endpoint in %d slices", len(slices.Items))
	})
	// The destination service and the client's proxy have had time to hear
	// of it (a dropped endpoint fails fast: no endpoints, 503).
	time.Sleep(2 * time.Second)
	ctx := framework.Context(t, time.Minute)
	n := 0
	for time.Since(start) < time.Duration(drainSeconds-8)*time.Second {
		if err := get(ctx); err != nil {
			t.Fatalf("%.0f s into the drain (request %d): %v", time.Since(start).Seconds(), n+1, err)
		}
		n++
		time.Sleep(500 * time.Millisecond)
	}
	if n < 5 {
		t.Fatalf("only %d requests during the drain: the test proves little", n)
	}
	t.Logf("%d requests during the drain, each answered by the terminating pod over mTLS", n)
}
