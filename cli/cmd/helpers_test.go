package cmd

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/pkg/version"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run 'go test ./cli/cmd -update' to create it)", err)
	}
	if string(want) != got {
		t.Errorf("output differs from %s (run with -update if the change is intended):\n%s", p, diff(string(want), got))
	}
}

// diff shows the first differing lines.
func diff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, w, g)
		}
	}
	return ""
}

// withVersion pins the CLI's version for the duration of the test.
func withVersion(t *testing.T, v string) {
	old := version.Version
	version.Version = v
	t.Cleanup(func() { version.Version = old })
}

// fakeKube returns a fake cluster with objs, serving the ServiceProfile
// API group when crds is true.
func fakeKube(crds bool, objs ...runtime.Object) (*Kube, *fake.Clientset) {
	cs := fake.NewClientset(objs...)
	d := cs.Discovery().(*fakediscovery.FakeDiscovery)
	if crds {
		d.Resources = []*metav1.APIResourceList{{GroupVersion: serviceProfileGV, APIResources: []metav1.APIResource{{Name: "serviceprofiles", Kind: "ServiceProfile", Namespaced: true}}}}
	}
	return &Kube{Client: cs, Namespace: "default"}, cs
}

// runWith runs the CLI against k (nil: no cluster) and returns stdout, stderr and the error.
func runWith(t *testing.T, k *Kube, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	o := &Options{Out: &out, Err: &errb, In: strings.NewReader("")}
	if k != nil {
		o.NewKube = func() (*Kube, error) { return k, nil }
	}
	root := NewRootCmd(o)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}
