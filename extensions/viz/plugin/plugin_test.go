package plugin

import (
	"context"
	"strings"
	"testing"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/sdktest"
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
