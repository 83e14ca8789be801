//go:build e2e

package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// TestClientHangUpReachesTheApp: a meshed client gives up on a slow request
// to a meshed server (testapp get -timeout closes its connection); the
// server application's request ends too, through both proxies, instead of
// running for the whole delay. Over the default path (HTTP/1 over the
// proxies' HTTP/2) and with a second client whose proxy sends HTTP/1.1
// between the proxies.
func TestClientHangUpReachesTheApp(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, "hangup")
	f.Apply(t, ns, manifests(
		echoDeployment("server", f.Image("testapp"), nil),
		httpService("server"),
		sleeperPod("client", f.Image("testapp")),
		sleeperPod("client-h1", f.Image("testapp"), `config.conduit.dev/proxy-http1-transport: http1`)))
	f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)
	f.WaitPodsReady(t, ns, "app in (client, client-h1)", 2, 3*time.Minute)
	// The first request may go to the Service's cluster IP (below): kube-proxy must know it.
	f.WaitEndpoints(t, ns, "server", 1, time.Minute)

	abandoned := func(ctx context.Context, client string) (string, error) {
		out, stderr, err := f.ExecE(ctx, ns, client, client, nil, "testapp", "get", "http://server:8080/abandoned")
		if err != nil {
			return "", fmt.Errorf("testapp get /abandoned: %w: %s", err, stderr)
		}
		return strings.TrimSpace(out), nil
	}
	for i, client := range []string{"client", "client-h1"} {
		// Until discovery knows the Service, the request goes to the
		// original destination; either way it crosses both proxies.
		want := fmt.Sprint(i + 1)
		start := time.Now()
		out, _, err := f.ExecE(framework.Context(t, time.Minute), ns, client, client, nil,
			"testapp", "get", "-timeout", "2s", "http://server:8080/?delay=2m")
		if err == nil {
			t.Fatalf("%s: a request delayed 2 minutes answered: %s", client, out)
		}
		var last string
		f.WaitFor(t, client+"'s abandoned request counted by the server application", 20*time.Second, func(ctx context.Context) (bool, error) {
			got, err := abandoned(ctx, client)
			if err != nil {
				return false, err
			}
			last = got
			if got != want {
				return false, fmt.Errorf("/abandoned says %q, want %q", got, want)
			}
			return true, nil
		})
		t.Logf("%s: the application saw its request abandoned %v after it was sent (/abandoned: %s)", client, time.Since(start).Round(100*time.Millisecond), last)
	}
}
