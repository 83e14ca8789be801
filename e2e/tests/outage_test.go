//go:build e2e

package tests

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// outageApps is a meshed echo server behind a Service and a meshed client.
func outageApps(image string) string {
	return manifests(echoDeployment("server", image, nil), httpService("server"), sleeperPod("client", image))
}

// TestControlPlaneOutage: with the destination and identity controllers gone,
// meshed traffic goes on with the endpoints and certificates the proxies
// already have, over mTLS, on new connections too; when they come back, the
// proxies reconnect on their own and learn what changed meanwhile.
func TestControlPlaneOutage(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, "outage")
	f.Apply(t, ns, outageApps(f.Image("testapp")))
	first := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0].Name
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"

	// requests sends n requests on new connections and checks that each
	// went through both proxies with mTLS; it returns the pods that answered.
	requests := func(ctx context.Context, n int) (map[string]int, error) {
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "get", "-new-conn", "-n", strconv.Itoa(n), "http://server:8080/")
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
		_, err := requests(ctx, 1)
		return err == nil, err
	})

	// The outage: both controllers scaled to zero, restored however the test ends.
	restore := f.StopControllers(t, "destination", "identity")

	t.Run("traffic goes on with mTLS while the controllers are gone", func(t *testing.T) {
		pods, err := requests(context.Background(), 20)
		if err != nil {
			t.Fatal(err)
		}
		if pods[first] != 20 {
			t.Fatalf("answers per pod %v, want 20 from %s", pods, first)
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
			pods, err := requests(ctx, 20)
			last = pods
			return err == nil && len(pods) == 2, err
		})
		t.Logf("answers per pod after the outage: %v", last)
	})
}
