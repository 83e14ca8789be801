package hooks

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/conduit-mesh/conduit/extensions/viz/charts"
	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
)

// TapEnv is the proxy setting the injector hook turns on.
const TapEnv = "CONDUIT_PROXY_TAP_ENABLED"

// Hooks is the viz extension as the injector runs it.
type Hooks struct{}

// Info names the extension and its version (charts.Version, the one its
// namespace is labelled with).
func (Hooks) Info() sdk.Info {
	return sdk.Info{Name: "viz", Version: charts.Version(), Description: "metrics, edges, routes and a dashboard from the proxies' metrics"}
}

// pod is the part of a core/v1 Pod the hook reads.
type pod struct {
	Spec struct {
		InitContainers []container `json:"initContainers"`
		Containers     []container `json:"containers"`
	} `json:"spec"`
}

type container struct {
	Name string `json:"name"`
	Env  []struct {
		Name string `json:"name"`
	} `json:"env"`
}

// PatchPod turns tap on in the proxy of a pod being injected: the proxy
// container (a native sidecar init container, or a container) gets
// CONDUIT_PROXY_TAP_ENABLED=true.
func (Hooks) PatchPod(_ context.Context, req *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
	var p pod
	if err := json.Unmarshal(req.Pod, &p); err != nil {
		return nil, fmt.Errorf("viz: decoding pod: %w", err)
	}
	for _, list := range []struct {
		field string
		cs    []container
	}{{"initContainers", p.Spec.InitContainers}, {"containers", p.Spec.Containers}} {
		for i, c := range list.cs {
			if c.Name != metrics.ProxyContainerName {
				continue
			}
			for _, e := range c.Env {
				if e.Name == TapEnv {
					return nil, nil // set already (by the user or an earlier call)
				}
			}
			env := map[string]string{"name": TapEnv, "value": "true"}
			base := fmt.Sprintf("/spec/%s/%d/env", list.field, i)
			if c.Env == nil {
				return []sdk.PatchOp{{Op: "add", Path: base, Value: []any{env}}}, nil
			}
			return []sdk.PatchOp{{Op: "add", Path: base + "/-", Value: env}}, nil
		}
	}
	return nil, nil // not a meshed pod: nothing to do
}

// Interface check: the hooks binary offers the injector hook only.
var _ sdk.InjectorHook = Hooks{}
