//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const cpNS = framework.ControlPlaneNamespace

// TestLifecycle: install → check passes → upgrade with a changed value →
// check passes and meshed workloads are not restarted → uninstall refuses
// while they remain → uninstall leaves no Conduit resource behind → check
// --pre passes again.
func TestLifecycle(t *testing.T) {
	if os.Getenv("E2E_LIFECYCLE") != "1" {
		t.Skip("make e2e-lifecycle runs it (E2E_LIFECYCLE=1): it removes any control plane, then installs, upgrades and uninstalls one")
	}
	f := framework.New(t)
	ctx := framework.Context(t, 20*time.Minute)
	// Start from a cluster without Conduit: remove what make e2e left.
	exts, err := f.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "conduit.dev/extension"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range exts.Items {
		t.Logf("removing the extension namespace %s left by an earlier run", ns.Name)
		f.DeleteNamespace(t, ns.Name, true)
	}
	_, nsErr := f.Client.CoreV1().Namespaces().Get(ctx, cpNS, metav1.GetOptions{})
	_, apiErr := f.Client.Discovery().ServerResourcesForGroupVersion("conduit.dev/v1alpha2")
	if nsErr == nil || apiErr == nil {
		t.Logf("removing the control plane and CRDs left by an earlier run")
		f.UninstallMesh(t)
	}
	// The CRDs go last and asynchronously: applying them again while they
	// are still being deleted would leave none.
	f.WaitFor(t, "the CRDs of an earlier install to be gone", 3*time.Minute, func(ctx context.Context) (bool, error) {
		r := f.RunKubectl(ctx, "", "get", "crd", "serviceprofiles.conduit.dev", "--ignore-not-found", "-o", "name")
		return r.Err == nil && strings.TrimSpace(r.Stdout) == "", r.Err
	})
	f.CollectOnFailure(t, cpNS)
	mesh := func(args ...string) string {
		t.Helper()
		r := f.RunMesh(ctx, args...)
		if r.Err != nil {
			t.Fatalf("mesh %s: %v\n%s", strings.Join(args, " "), r.Err, r.Stdout)
		}
		return r.Stdout
	}
	kubectl := func(stdin string, args ...string) {
		t.Helper()
		if r := f.RunKubectl(ctx, stdin, args...); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	images := []string{"--registry", f.Registry, "--tag", f.Tag}

	mesh("check", "--pre", "--wait", "2m")
	kubectl(mesh("install", "--crds"), "apply", "-f", "-")
	kubectl("", "wait", "--for", "condition=established", "--timeout", "60s", "crd/serviceprofiles.conduit.dev")
	kubectl(mesh(append([]string{"install"}, images...)...), "apply", "-f", "-")
	if r := f.RunMesh(ctx, append([]string{"install"}, images...)...); r.Err == nil || !strings.Contains(r.Stderr, "mesh upgrade") {
		t.Errorf("a second install was not refused with a pointer to mesh upgrade: %v", r.Err)
	}
	mesh("check", "--wait", "5m")

	// A meshed workload.
	app := f.NewNamespace(t, "lifecycle", nil)
	kubectl("", "annotate", "namespace", app, "conduit.dev/inject=enabled")
	kubectl(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
      - name: app
        image: %s
        imagePullPolicy: IfNotPresent
        args: [serve]
`, app, f.Image("testapp")), "apply", "-f", "-")
	pods := f.WaitPodsReady(t, app, "app=app", 1, 3*time.Minute)
	if pods[0].Labels["conduit.dev/control-plane-ns"] != cpNS {
		t.Fatalf("the workload was not injected: labels %v", pods[0].Labels)
	}
	uid := pods[0].UID
	mesh("check", "--proxy", "-n", app, "--wait", "3m")

	// Upgrade with a changed value: the control plane rolls, workloads do not.
	up := mesh(append([]string{"upgrade", "--proxy-log-level", "debug"}, images...)...)
	if !strings.Contains(up, "logLevel: debug") {
		t.Errorf("upgrade output lacks the new proxy log level")
	}
	kubectl(up, "apply", "-f", "-")
	f.WaitControlPlane(t, 5*time.Minute)
	mesh("check", "--proxy", "-n", app, "--wait", "5m")
	after := f.WaitPodsReady(t, app, "app=app", 1, time.Minute)
	if len(after) != 1 || after[0].UID != uid {
		t.Errorf("the upgrade restarted the meshed workload")
	}

	// Uninstall refuses while meshed pods remain.
	if r := f.RunMesh(ctx, "uninstall"); r.Err == nil || !strings.Contains(r.Stderr, "meshed pods remain") {
		t.Errorf("uninstall did not refuse with meshed pods: %v", r.Err)
	}
	f.DeleteNamespace(t, app, true)
	kubectl(mesh("uninstall"), "delete", "--ignore-not-found", "--wait=true", "-f", "-")
	f.WaitFor(t, "namespace "+cpNS+" deleted", 3*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := f.Client.CoreV1().Namespaces().Get(ctx, cpNS, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	// Nothing of Conduit left behind.
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=conduit"}
	crs, _ := f.Client.RbacV1().ClusterRoles().List(ctx, sel)
	crbs, _ := f.Client.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if len(crs.Items)+len(crbs.Items) > 0 {
		t.Errorf("left behind: %d ClusterRoles, %d ClusterRoleBindings", len(crs.Items), len(crbs.Items))
	}
	if _, err := f.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "conduit-proxy-injector", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the webhook configuration is left behind: %v", err)
	}
	f.WaitFor(t, "the conduit.dev API to be gone", time.Minute, func(context.Context) (bool, error) {
		_, err := f.Client.Discovery().ServerResourcesForGroupVersion("conduit.dev/v1alpha2")
		return err != nil, nil
	})
	mesh("check", "--pre", "--wait", "2m")
}
