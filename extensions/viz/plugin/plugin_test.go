package plugin

import (
	"context"
	"encoding/json"
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

func TestPatchPod(t *testing.T) {
	for _, tc := range []struct {
		name, pod, want string
	}{
		{"native sidecar without env", `{"spec":{"initContainers":[{"name":"proxy-init"},{"name":"conduit-proxy"}],"containers":[{"name":"app"}]}}`,
			`[{"op":"add","path":"/spec/initContainers/1/env","value":[{"name":"CONDUIT_PROXY_TAP_ENABLED","value":"true"}]}]`},
		{"native sidecar with env", `{"spec":{"initContainers":[{"name":"conduit-proxy","env":[{"name":"A","value":"b"}]}]}}`,
			`[{"op":"add","path":"/spec/initContainers/0/env/-","value":{"name":"CONDUIT_PROXY_TAP_ENABLED","value":"true"}}]`},
		{"plain sidecar", `{"spec":{"containers":[{"name":"app"},{"name":"conduit-proxy","env":[]}]}}`,
			`[{"op":"add","path":"/spec/containers/1/env/-","value":{"name":"CONDUIT_PROXY_TAP_ENABLED","value":"true"}}]`},
		{"already set", `{"spec":{"initContainers":[{"name":"conduit-proxy","env":[{"name":"CONDUIT_PROXY_TAP_ENABLED","value":"false"}]}]}}`, `null`},
		{"not meshed", `{"spec":{"containers":[{"name":"app"}]}}`, `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := Viz{}.PatchPod(context.Background(), &sdk.PodPatchRequest{Pod: []byte(tc.pod)})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(ops)
			if string(got) != tc.want {
				t.Errorf("patch = %s\nwant    %s", got, tc.want)
			}
		})
	}
	if _, err := (Viz{}).PatchPod(context.Background(), &sdk.PodPatchRequest{Pod: []byte(`{`)}); err == nil {
		t.Error("a broken pod was accepted")
	}
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
