//go:build e2e

package tests

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// meshedNamespace creates a namespace whose new pods the injector meshes.
func meshedNamespace(t *testing.T, f *framework.Framework, prefix string) string {
	t.Helper()
	ns := f.NewNamespace(t, prefix, nil)
	f.KubectlCmd(t, "", "annotate", "namespace", ns, "conduit.dev/inject=enabled")
	return ns
}

// echoDeployment is the manifest of a one-replica Deployment of
// "testapp serve" named name (pods labelled app=name, POD_NAME from the
// downward API, ready once /healthz on 8080 answers), with args after
// "serve -addr :8080" and ports ("name:port") besides http:8080.
func echoDeployment(name, image string, args []string, ports ...string) string {
	var p strings.Builder
	for _, s := range append([]string{"http:8080"}, ports...) {
		n, port, _ := strings.Cut(s, ":")
		fmt.Fprintf(&p, "{name: %s, containerPort: %s}, ", n, port)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: %[2]s
        imagePullPolicy: IfNotPresent
        args: [%[3]s]
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [%[4]s]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
`, name, image, serveArgs(args), strings.TrimSuffix(p.String(), ", "))
}

// withPodAnnotations adds annotations ("key: value, ...") to the pod
// template of echoDeployment's manifest d of the Deployment named name.
func withPodAnnotations(d, name, annotations string) string {
	labels := "      labels: {app: " + name + "}\n"
	return strings.Replace(d, labels, labels+"      annotations: {"+annotations+"}\n", 1)
}

// servePod is the manifest of a Pod named name (labelled app=name) that runs
// "testapp serve -addr :8080" with args, its termination grace period grace
// seconds, annotations ("key: value", ...) on it: for a test that injects it
// by hand (mesh inject --manual) or deletes it while it serves.
func servePod(name, image string, grace int, annotations string, args ...string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[1]s, labels: {app: %[1]s}, annotations: {%[3]s}}
spec:
  terminationGracePeriodSeconds: %[4]d
  containers:
  - name: app
    image: %[2]s
    imagePullPolicy: IfNotPresent
    args: [%[5]s]
    env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
`, name, image, annotations, grace, serveArgs(args))
}

// serveArgs is the YAML flow list of "testapp serve -addr :8080" and args.
func serveArgs(args []string) string {
	var a strings.Builder
	for _, s := range append([]string{"serve", "-addr", ":8080"}, args...) {
		fmt.Fprintf(&a, "%q, ", s)
	}
	return strings.TrimSuffix(a.String(), ", ")
}

// httpService is the manifest of a Service named name for the pods labelled
// app=name: port 8080 to their port named http.
func httpService(name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 8080, targetPort: http}]
`, name)
}

// sleeperPod is the manifest of a pod named name (labelled app=name) whose
// one container, also name, idles: a client to run testapp commands in.
// annotations ("key: value") go on the pod.
func sleeperPod(name, image string, annotations ...string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[1]s, labels: {app: %[1]s}, annotations: {%[3]s}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: %[1]s, image: %[2]s, imagePullPolicy: IfNotPresent, args: [sleep]}]
`, name, image, strings.Join(annotations, ", "))
}

// manifests joins manifests into one YAML stream.
func manifests(docs ...string) string { return strings.Join(docs, "---\n") }

// proxyEnv is the value of the environment variable name in pod p's proxy
// container (a native sidecar or a regular container), "" without one.
func proxyEnv(p corev1.Pod, name string) string {
	for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		if c.Name != "conduit-proxy" {
			continue
		}
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	return ""
}
