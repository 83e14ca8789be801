//go:build e2e

package tests

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// TestApplicationStopsThroughTheMesh: an application whose proxy is a
// regular container (as on Kubernetes before 1.29; here the pod asks with
// config.conduit.dev/sidecar-mode: regular, and the control is injected with
// mesh inject --manual --sidecar-mode regular) gets SIGTERM with its proxy.
// While it stops it still serves (-drain 4s) and then calls another meshed
// service (-on-stop).
// Its proxy keeps serving while the application holds sockets: a request
// from a meshed client reaches the stopping pod, and the application's last
// call reaches the server over mTLS, with its identity. The proxy drains as
// soon as the application has exited, so the pod is gone long before its
// 30 s grace period. The control, config.conduit.dev/wait-for-app-exit: 0s:
// the proxy drains at SIGTERM, the request to the pod fails and so does the
// application's last call. And the same application with a native sidecar
// (the injector's default here): the kubelet stops the proxy once the
// application has exited, so the proxy finds no socket and drains at once.
func TestApplicationStopsThroughTheMesh(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, "appstop")

	stopper := func(name, annotations string) string {
		return servePod(name, f.Image("testapp"), 30, annotations, "-drain", "4s", "-on-stop", "http://server:8080/last-call/"+name)
	}
	file := filepath.Join(t.TempDir(), "stoppers.yaml")
	if err := os.WriteFile(file, []byte(stopper("stopper-off", `config.conduit.dev/wait-for-app-exit: 0s`)), 0o644); err != nil {
		t.Fatal(err)
	}
	injected := f.MeshCmd(t, "inject", "--manual", "--sidecar-mode", "regular", "-n", ns, file)
	f.Apply(t, ns, manifests(injected,
		echoDeployment("server", f.Image("testapp"), nil),
		httpService("server"),
		sleeperPod("client", f.Image("testapp"))))
	// The webhook's: native by default here, regular when the pod asks.
	f.Apply(t, ns, manifests(stopper("stopper", `config.conduit.dev/sidecar-mode: regular`), stopper("stopper-native", "")))
	pods := map[string]corev1.Pod{}
	for _, p := range f.WaitPodsReady(t, ns, "app in (stopper, stopper-off, stopper-native)", 3, 3*time.Minute) {
		pods[p.Name] = p
		env := map[string]string{}
		proxies := p.Spec.Containers
		if p.Name == "stopper-native" {
			proxies = p.Spec.InitContainers
		}
		for _, c := range proxies {
			if c.Name == "conduit-proxy" {
				for _, e := range c.Env {
					env[e.Name] = e.Value
				}
			}
		}
		want := map[string]string{"stopper": "30s", "stopper-off": "0s", "stopper-native": "30s"}[p.Name]
		if got, ok := env["CONDUIT_PROXY_WAIT_FOR_APP_EXIT"]; !ok || got != want {
			t.Fatalf("%s: no proxy container with CONDUIT_PROXY_WAIT_FOR_APP_EXIT=%s where expected (%q, %v)", p.Name, want, got, ok)
		}
	}
	f.WaitPodsReady(t, ns, "app in (server, client)", 2, 3*time.Minute)

	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	for name := range pods {
		// Until discovery knows the Service, the proxy forwards without mTLS.
		f.WaitFor(t, name+": the server through both proxies with mTLS", 2*time.Minute, func(ctx context.Context) (bool, error) {
			out, stderr, err := f.ExecE(ctx, ns, name, "app", nil, "testapp", "get", "http://server:8080/")
			if err != nil {
				return false, fmt.Errorf("testapp get: %w: %s", err, stderr)
			}
			if !strings.Contains(out, clientID) {
				return false, fmt.Errorf("the server saw no client identity %s: %s", clientID, out)
			}
			return true, nil
		})
	}

	for _, tc := range []struct {
		pod   string
		serve bool   // the pod serves, and calls out, until its application exits
		mark  string // what its proxy logs at SIGTERM, before the request to the pod ("": nothing, SIGTERM comes later)
	}{
		{"stopper", true, "serving until the application exits"},
		{"stopper-off", false, `"draining"`},
		{"stopper-native", true, ""},
	} {
		t.Run(tc.pod, func(t *testing.T) {
			ctx := framework.Context(t, 2*time.Minute)
			appLog := followLines(ctx, f, ns, tc.pod, "app")
			proxyLog := followLines(ctx, f, ns, tc.pod, "conduit-proxy")
			start := time.Now()
			f.KubectlCmd(t, "", "delete", "pod", "-n", ns, tc.pod, "--wait=false")

			var appLines, proxyLines []string
			if !waitLine(t, appLog, &appLines, `"draining"`, 20*time.Second) {
				t.Fatalf("the application never logged that it is draining; it logged:\n%s", strings.Join(appLines, "\n"))
			}
			if tc.mark != "" && !waitLine(t, proxyLog, &proxyLines, tc.mark, 20*time.Second) {
				t.Fatalf("the proxy never logged %s; it logged:\n%s", tc.mark, strings.Join(proxyLines, "\n"))
			}
			// The application is draining (4 s): a meshed client's request to the pod.
			out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "get", "-timeout", "2s",
				"http://"+pods[tc.pod].Status.PodIP+":8080/")
			switch {
			case tc.serve && err != nil:
				t.Errorf("a request to the stopping pod, its application still serving: %v: %s %s", err, out, stderr)
			case tc.serve && !strings.Contains(out, `"pod":"`+tc.pod+`"`):
				t.Errorf("a request to the stopping pod was answered by something else: %s", out)
			case !tc.serve && err == nil:
				t.Errorf("a request to the pod whose proxy drained at SIGTERM was answered: %s", out)
			}

			// The application's last call, in its log when it has exited.
			waitLine(t, appLog, &appLines, "", 30*time.Second)
			last := ""
			for _, l := range appLines {
				if strings.Contains(l, "on-stop") {
					last = l
				}
			}
			if tc.serve {
				if !strings.Contains(last, "on-stop answered") || !strings.Contains(last, `"status":200`) || !strings.Contains(last, clientID) {
					t.Errorf("the application's call while it stopped did not reach the server over mTLS with its identity %s: %q", clientID, last)
				}
			} else if !strings.Contains(last, "on-stop failed") {
				t.Errorf("with wait-for-app-exit 0s, the application's call while it stopped: %q, want it failed", last)
			}

			f.WaitFor(t, tc.pod+" gone", time.Minute, func(ctx context.Context) (bool, error) {
				_, err := f.Client.CoreV1().Pods(ns).Get(ctx, tc.pod, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return true, nil
				}
				return false, err
			})
			took := time.Since(start)
			waitLine(t, proxyLog, &proxyLines, "", 10*time.Second)
			t.Logf("%s: gone %v after its deletion; the application's last call: %s", tc.pod, took.Round(100*time.Millisecond), last)
			switch tc.pod {
			case "stopper":
				if l := lineWith(proxyLines, "the application has exited"); l == "" {
					t.Errorf("the proxy did not log that the application exited:\n%s", strings.Join(proxyLines, "\n"))
				} else {
					t.Logf("%s's proxy: %s", tc.pod, l)
				}
			case "stopper-native":
				if l := lineWith(proxyLines, "serving until the application exits"); l != "" {
					t.Errorf("the native sidecar waited for an application that had exited: %s", l)
				}
				if lineWith(proxyLines, `"drained"`) == "" {
					t.Errorf("the native sidecar did not log its drain:\n%s", strings.Join(proxyLines, "\n"))
				}
			}
			// The application stops in about 4.5 s; a proxy that waited
			// for the whole limit would keep the pod for 30 s.
			if took > 20*time.Second {
				t.Errorf("the pod took %v to go: the proxy did not drain when the application exited", took)
			}
		})
	}
}

// followLines streams the log lines of a container until it ends or ctx
// does; the channel closes then.
func followLines(ctx context.Context, f *framework.Framework, ns, pod, container string) <-chan string {
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		rc, err := f.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
		if err != nil {
			lines <- "(no logs: " + err.Error() + ")"
			return
		}
		defer rc.Close()
		s := bufio.NewScanner(rc)
		s.Buffer(nil, 1<<20)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	return lines
}

// waitLine appends the lines of ch to *seen until one contains mark, ch
// closes (mark "": until then) or timeout passes; it reports whether it saw
// mark.
func waitLine(t *testing.T, ch <-chan string, seen *[]string, mark string, timeout time.Duration) bool {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				return false
			}
			*seen = append(*seen, l)
			if mark != "" && strings.Contains(l, mark) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// lineWith is the first of lines that contains s, or "".
func lineWith(lines []string, s string) string {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
