package hooks

import (
	"context"
	"encoding/json"
	"testing"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/sdktest"
)

// TestConformance: the hooks the injector runs follow the SDK's contract,
// and offer the injector hook only (no CLI commands, manifests or checks:
// those are mesh-viz's, package plugin).
func TestConformance(t *testing.T) {
	sdktest.Conformance(t, Hooks{}, sdktest.Options{
		Pod: []byte(`{"spec":{"initContainers":[{"name":"conduit-proxy"}],"containers":[{"name":"app"}]}}`),
	})
	var ext sdk.Extension = Hooks{}
	if _, ok := ext.(sdk.Commander); ok {
		t.Error("the hooks offer CLI commands")
	}
	if _, ok := ext.(sdk.Installer); ok {
		t.Error("the hooks offer manifests")
	}
	if _, ok := ext.(sdk.Checker); ok {
		t.Error("the hooks offer checks")
	}
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
			ops, err := Hooks{}.PatchPod(context.Background(), &sdk.PodPatchRequest{Pod: []byte(tc.pod)})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(ops)
			if string(got) != tc.want {
				t.Errorf("patch = %s\nwant    %s", got, tc.want)
			}
		})
	}
	if _, err := (Hooks{}).PatchPod(context.Background(), &sdk.PodPatchRequest{Pod: []byte(`{`)}); err == nil {
		t.Error("a broken pod was accepted")
	}
}
