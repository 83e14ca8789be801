package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/extensions/viz/cli"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/sdktest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestConformance(t *testing.T) {
	sdktest.Conformance(t, Viz{}, sdktest.Options{
		SkipChecks:    true, // needs a cluster: covered by cli.TestCheck and the e2e test
		InstallValues: map[string]any{"prometheusUrl": "http://prom.monitoring:9090"},
		Pod:           []byte(`{"spec":{"initContainers":[{"name":"conduit-proxy"}],"containers":[{"name":"app"}]}}`),
	})
}

func TestInstallNamespace(t *testing.T) {
	out, err := Viz{}.Install(context.Background(), sdk.InstallRequest{Namespace: "viz-other", Values: map[string]any{"image": map[string]any{"tag": "v9"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if !strings.Contains(s, "name: viz-other\n") || strings.Contains(s, "namespace: conduit-viz") || !strings.Contains(s, "viz-controller:v9") {
		t.Errorf("namespace or values not applied:\n%s", s)
	}
	if _, err := (Viz{}).Install(context.Background(), sdk.InstallRequest{Namespace: "Bad!"}); err == nil {
		t.Error("a bad namespace was accepted")
	}
}

func TestRunErrors(t *testing.T) {
	c := sdktest.Start(t, Viz{})
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cmd := range info.Commands {
		names = append(names, cmd.Name)
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "stat") || !strings.Contains(got, "edges") {
		t.Errorf("commands = %s", got)
	}
	var out strings.Builder
	err = Viz{}.Run(context.Background(), &sdk.Invocation{Args: []string{"stat", "cronjob"}, Stdout: &out, Stderr: &out, Stdin: strings.NewReader("")})
	if err == nil || !strings.Contains(err.Error(), "unknown resource type") {
		t.Errorf("stat cronjob: %v", err)
	}
}

// TestCheckVizNamespace: viz declares the check flag --viz-namespace, and
// its value is the namespace checked (it was always "": the labelled one).
func TestCheckVizNamespace(t *testing.T) {
	// The checks stop at the first failure, before the metrics API.
	kc := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz"}})
	connect = func(cli.KubeFlags) (*cli.Kube, error) { return &cli.Kube{Client: kc}, nil }
	t.Cleanup(func() { connect = cli.Connect })
	c := sdktest.Start(t, Viz{})
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint([]sdk.CheckFlag{{Name: "viz-namespace", Usage: cli.VizNamespaceUsage}}); fmt.Sprint(info.CheckFlags) != want {
		t.Errorf("check flags %v, want %s", info.CheckFlags, want)
	}
	for _, tc := range []struct {
		flags      map[string]string
		desc, fail string
	}{
		{map[string]string{"viz-namespace": "viz-other"}, "viz namespace viz-other exists", "namespace viz-other not found"},
		{nil, "namespace conduit-viz is labelled conduit.dev/extension=viz", "namespace conduit-viz has no label conduit.dev/extension=viz"},
	} {
		cats, err := c.CheckWithFlags(context.Background(), sdk.KubeFlags{}, tc.flags)
		if err != nil || len(cats) == 0 || len(cats[0].Checks) == 0 {
			t.Fatalf("%v: %v %+v", tc.flags, err, cats)
		}
		first := cats[0].Checks[0]
		if first.Description != tc.desc || first.Error != tc.fail {
			t.Errorf("%v: first check %+v, want %q failing with %q", tc.flags, first, tc.desc, tc.fail)
		}
	}
}
