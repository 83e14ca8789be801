//go:build e2e

package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// profileApps is two meshed echo servers, each behind its own Service (web,
// and web-v2 as the other backend of a traffic split), and a meshed client.
func profileApps(image string) string {
	docs := []string{sleeperPod("client", image)}
	for _, name := range []string{"web", "web-v2"} {
		docs = append(docs, echoDeployment(name, image, nil), fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 8080, targetPort: http}]
`, name))
	}
	return manifests(docs...)
}

// webProfile is web's ServiceProfile: a retryable route, one that is not,
// and one with a timeout, with a budget that allows a retry of every
// request; split, when set, is its dstOverrides.
const webProfile = `apiVersion: conduit.dev/v1alpha2
kind: ServiceProfile
metadata: {name: web.%[1]s.svc.cluster.local}
spec:
  routes:
  - name: flaky
    condition: {pathRegex: /flaky}
    isRetryable: true
  - name: once
    condition: {pathRegex: /once}
  - name: slow
    condition: {pathRegex: /slow}
    timeout: 500ms
  retryBudget: {retryRatio: 1.0, minRetriesPerSecond: 100, ttl: 10s}
%[2]s`

// TestServiceProfilesThroughTheMesh: the client's proxy applies web's
// ServiceProfile. A request on a retryable route that fails (503) is retried
// and the client sees the retry's answer; on a route that is not retryable it
// sees the failure. A route's timeout answers 504 when it passes, long before
// the server would have answered. dstOverrides send web's requests to web-v2,
// or share them by weight, and back to web when removed.
func TestServiceProfilesThroughTheMesh(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	ensureProfileCRD(t, f)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, "profile")
	f.Apply(t, ns, profileApps(f.Image("testapp")))
	v1 := f.WaitPodsReady(t, ns, "app=web", 1, 3*time.Minute)[0].Name
	v2 := f.WaitPodsReady(t, ns, "app=web-v2", 1, 3*time.Minute)[0].Name
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)
	f.Apply(t, ns, fmt.Sprintf(webProfile, ns, ""))

	get := func(ctx context.Context, args ...string) (string, error) {
		out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, append([]string{"testapp", "get"}, args...)...)
		if err != nil {
			return out, fmt.Errorf("testapp get %v: %w: %s %s", args, err, out, stderr)
		}
		return out, nil
	}
	key := 0
	flaky := func() string {
		key++
		return fmt.Sprintf("http://web:8080/flaky?fail-first=1&key=k%d", key)
	}

	t.Run("a retryable route is retried", func(t *testing.T) {
		// The profile reaches the client's proxy a moment after the apply.
		f.WaitFor(t, "the first 503 of the flaky route retried", time.Minute, func(ctx context.Context) (bool, error) {
			_, err := get(ctx, flaky())
			return err == nil, err
		})
		for range 5 {
			out, err := get(context.Background(), flaky())
			if err != nil {
				t.Fatal(err)
			}
			es := decodeEchoes(t, out)
			if len(es) != 1 || es[0].Attempt != 2 || es[0].Pod != v1 {
				t.Fatalf("want one answer from %s on the second attempt, got %+v", v1, es)
			}
		}
	})

	t.Run("a route that is not retryable is not", func(t *testing.T) {
		url := fmt.Sprintf("http://web:8080/once?fail-first=1&key=once-%d", time.Now().UnixNano())
		if _, err := get(context.Background(), "-expect-status", "503", url); err != nil {
			t.Fatalf("the first request on a route without retries: %v", err)
		}
		out, err := get(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		if es := decodeEchoes(t, out); len(es) != 1 || es[0].Attempt != 2 {
			t.Fatalf("the second request: want the server's second attempt, got %+v", es)
		}
	})

	t.Run("a route's timeout answers 504", func(t *testing.T) {
		start := time.Now()
		if _, err := get(context.Background(), "-expect-status", "504", "-timeout", "20s", "http://web:8080/slow?delay=10s"); err != nil {
			t.Fatal(err)
		}
		// 500 ms of timeout and an exec; the server would have taken 10 s.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the 504 took %v, want about the route's 500ms", d)
		}
		// Another route of the same Service has no timeout.
		if _, err := get(context.Background(), "-timeout", "20s", "http://web:8080/other?delay=1s"); err != nil {
			t.Errorf("a route without a timeout: %v", err)
		}
	})

	pods := func(ctx context.Context, n int) (map[string]int, error) {
		out, err := get(ctx, "-n", fmt.Sprint(n), "http://web:8080/")
		if err != nil {
			return nil, err
		}
		seen := map[string]int{}
		for _, e := range decodeEchoes(t, out) {
			seen[e.Pod]++
		}
		return seen, nil
	}
	split := func(t *testing.T, overrides string, desc string, ok func(map[string]int) bool) {
		t.Helper()
		f.Apply(t, ns, fmt.Sprintf(webProfile, ns, overrides))
		var last map[string]int
		f.WaitFor(t, desc, time.Minute, func(ctx context.Context) (bool, error) {
			seen, err := pods(ctx, 40)
			last = seen
			return err == nil && ok(seen), err
		})
		t.Logf("%s: answers per pod %v", desc, last)
	}
	t.Run("dstOverrides split web's traffic", func(t *testing.T) {
		auth := func(svc string) string { return svc + "." + ns + ".svc.cluster.local:8080" }
		split(t, fmt.Sprintf("  dstOverrides:\n  - {authority: %q, weight: 1}\n", auth("web-v2")),
			"every request to web served by web-v2", func(m map[string]int) bool { return m[v2] == 40 })
		split(t, fmt.Sprintf("  dstOverrides:\n  - {authority: %q, weight: 500}\n  - {authority: %q, weight: 500}\n", auth("web"), auth("web-v2")),
			"web's requests shared by web and web-v2", func(m map[string]int) bool { return m[v1] > 0 && m[v2] > 0 && m[v1]+m[v2] == 40 })
		split(t, "", "every request to web served by web again", func(m map[string]int) bool { return m[v1] == 40 })
	})
}
