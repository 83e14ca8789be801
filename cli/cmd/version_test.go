package cmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/conduit-mesh/conduit/pkg/version"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := NewRootCmd(&Options{Out: &out, Err: &errb, In: strings.NewReader("")})
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	old := version.Version
	version.Version = "v9.9.9-test"
	t.Cleanup(func() { version.Version = old })

	out, err := run(t, "version", "--client")
	if err != nil || !strings.Contains(out, "Client version: v9.9.9-test") {
		t.Fatalf("version --client = %q, %v", out, err)
	}
	out, err = run(t, "version", "--short", "--client")
	if err != nil || out != "v9.9.9-test\n" {
		t.Fatalf("version --short = %q, %v", out, err)
	}
	out, err = run(t, "version", "--client", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Client version.Info }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Client.Version != "v9.9.9-test" {
		t.Fatalf("json = %q, %v", out, err)
	}
	if _, err := run(t, "version", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "accepted: text, json") {
		t.Fatalf("bad -o accepted: %v", err)
	}
}

func TestServerVersion(t *testing.T) {
	withVersion(t, "v1.2.3")
	objs := healthyCluster(t)
	objs["old"] = meshedPod("api-1", "shop", "v1.1.0", true)
	k := kubeOf(objs)
	out, _, err := runWith(t, k, "version", "--proxy")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "version_proxy.golden", strings.SplitN(out, "\n", 2)[0]+"\n"+out[strings.Index(out, "Server version"):])
	out, _, err = runWith(t, k, "version", "--short")
	if err != nil || out != "v1.2.3\nv1.2.3\n" {
		t.Fatalf("--short = %q, %v", out, err)
	}
	out, _, err = runWith(t, must(fakeKube(true)), "version")
	if err != nil || !strings.Contains(out, "Server version: unavailable (no Conduit control plane found in namespace conduit)") {
		t.Fatalf("without control plane = %q, %v", out, err)
	}
}

// When the meshed pods cannot be listed (no RBAC to list pods everywhere),
// version --proxy still prints the control plane's version, and says that
// the proxies' versions are what is missing.
func TestVersionProxyListFails(t *testing.T) {
	withVersion(t, "v1.2.3")
	k := kubeOf(healthyCluster(t))
	k.Client.(*fake.Clientset).PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("user cannot list pods"))
	})
	out, _, err := runWith(t, k, "version", "--proxy")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Server version: v1.2.3\n") || !strings.Contains(out, "Proxy versions: unavailable (list meshed pods: ") || strings.Contains(out, "Server version: unavailable") {
		t.Errorf("version --proxy =\n%s", out)
	}
	out, _, err = runWith(t, k, "version", "--proxy", "--short")
	if err != nil || out != "v1.2.3\nv1.2.3\n" {
		t.Errorf("version --proxy --short = %q, %v", out, err)
	}
	out, _, err = runWith(t, k, "version", "--proxy", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Server       struct{ Version string }
		ServerError  string
		ProxiesError string
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if doc.Server.Version != "v1.2.3" || doc.ServerError != "" || !strings.Contains(doc.ProxiesError, "forbidden") {
		t.Errorf("version --proxy -o json =\n%s", out)
	}
}
