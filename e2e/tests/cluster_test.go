//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// echoApp is a 2-replica HTTP echo Deployment behind a Service, and a client pod.
const echoApp = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, labels: {app: echo}}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: %[1]s
        imagePullPolicy: IfNotPresent
        args: [serve, -addr, ":8080"]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: %[1]s
    imagePullPolicy: IfNotPresent
    args: [sleep]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
`

// echo is the answer of the testapp server.
type echo struct {
	Pod        string              `json:"pod"`
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Proto      string              `json:"proto"`
	RemoteAddr string              `json:"remoteAddr"`
	Headers    map[string][]string `json:"headers"`
	// Trailers: a name announced but never sent has a nil value.
	Trailers  map[string][]string `json:"trailers"`
	BodyBytes int64               `json:"bodyBytes"`
	Attempt   int                 `json:"attempt"`
}

// sawClient reports, as an error, an echo whose server did not see the
// client's identity clientID in conduit-client-id: the request did not
// cross both proxies with mTLS.
func (e echo) sawClient(clientID string) error {
	if id := e.Headers["Conduit-Client-Id"]; len(id) != 1 || id[0] != clientID {
		return fmt.Errorf("%s saw conduit-client-id %v, want %s (mTLS between the proxies)", e.Pod, id, clientID)
	}
	return nil
}

func decodeEchoes(t *testing.T, out string) []echo {
	t.Helper()
	var es []echo
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e echo
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("decoding the echo server's answers: %v\n%s", err, out)
		}
		es = append(es, e)
	}
	return es
}

// TestCluster checks the local cluster itself: the node is Ready, cluster DNS answers (and only
// for cluster names), and a Deployment behind a Service serves traffic to another pod through
// the Service name.
func TestCluster(t *testing.T) {
	f := framework.New(t)

	t.Run("node is Ready", func(t *testing.T) {
		nodes, err := f.Client.CoreV1().Nodes().List(framework.Context(t, 30*time.Second), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != 1 {
			t.Fatalf("%d nodes, want 1", len(nodes.Items))
		}
		ready := false
		for _, c := range nodes.Items[0].Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			t.Fatalf("node %s is not Ready: %+v", nodes.Items[0].Name, nodes.Items[0].Status.Conditions)
		}
	})

	ns := f.NewNamespace(t, "cluster", nil)
	f.Apply(t, ns, fmt.Sprintf(echoApp, f.Image("testapp")))
	f.WaitRollout(t, ns, "deployment/echo", 2*time.Minute)
	f.WaitPodsReady(t, ns, "app=client", 1, 2*time.Minute)
	ctx := framework.Context(t, 2*time.Minute)

	t.Run("DNS resolves cluster names only", func(t *testing.T) {
		kube, err := f.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := f.Client.CoreV1().Services(ns).Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{
			"kubernetes.default.svc.cluster.local": kube.Spec.ClusterIP,
			"echo." + ns + ".svc.cluster.local":    svc.Spec.ClusterIP,
			"echo":                                 svc.Spec.ClusterIP, // the pod's search path
		} {
			out := f.Exec(t, ns, "client", "", "testapp", "lookup", name)
			if strings.TrimSpace(out) != want {
				t.Errorf("lookup %s = %q, want %s", name, strings.TrimSpace(out), want)
			}
		}
		// Sandbox guard: no upstream resolver, so names outside the cluster do not resolve.
		if out, _, err := f.ExecE(ctx, ns, "client", "", nil, "testapp", "lookup", "example.com"); err == nil {
			t.Errorf("lookup example.com succeeded (%q): cluster DNS must not forward upstream", strings.TrimSpace(out))
		}
	})

	t.Run("Service serves traffic from another pod", func(t *testing.T) {
		f.WaitEndpoints(t, ns, "echo", 2, time.Minute)
		backends := map[string]bool{}
		for _, p := range f.DeploymentPods(t, ns, "echo") {
			backends[p.Name] = true
		}
		// Every answer comes from a pod of the Deployment, through the Service name; new
		// connections reach both replicas (kube-proxy may need a moment to program the second).
		seen := map[string]int{}
		f.WaitFor(t, "answers from both replicas", time.Minute, func(ctx context.Context) (bool, error) {
			// kube-proxy programs the Service a moment after its endpoints are ready: retry
			// "connection refused" until then.
			out, _, err := f.ExecE(ctx, ns, "client", "", nil, "testapp", "get", "-n", "10", "-new-conn", "-H", "X-E2e: yes", "http://echo/hello")
			if err != nil {
				return false, err
			}
			answers := decodeEchoes(t, out)
			if len(answers) != 10 {
				t.Fatalf("%d answers, want 10", len(answers))
			}
			for _, a := range answers {
				if !backends[a.Pod] {
					t.Fatalf("answer from %q, which is not a pod of deployment echo %v", a.Pod, backends)
				}
				if a.Path != "/hello" || strings.Join(a.Headers["X-E2e"], "") != "yes" {
					t.Fatalf("the server saw path %q headers %v", a.Path, a.Headers)
				}
				seen[a.Pod]++
			}
			return len(seen) == 2, nil
		})
		t.Logf("answers per pod: %v", seen)
	})

	t.Run("port-forward reaches a pod", func(t *testing.T) {
		pods := f.DeploymentPods(t, ns, "echo")
		port := f.PortForward(t, ns, pods[0].Name, 8080)
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/pf", port))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		es := decodeEchoes(t, string(body))
		if resp.StatusCode != 200 || len(es) != 1 || es[0].Pod != pods[0].Name || es[0].Path != "/pf" {
			t.Errorf("status %d, answer %s, want one from %s", resp.StatusCode, body, pods[0].Name)
		}
	})

	t.Run("pod traffic cannot leave the machine", func(t *testing.T) {
		// 192.0.2.0/24 (TEST-NET-1) stands for any address outside the pod network.
		c, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, _, err := f.ExecE(c, ns, "client", "", nil, "testapp", "get", "-timeout", "2s", "http://192.0.2.123/"); err == nil {
			t.Error("a pod reached an address outside the pod network")
		}
	})
}
