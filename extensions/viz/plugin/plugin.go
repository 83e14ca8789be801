package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/conduit-mesh/conduit/extensions/viz/cli"
	"github.com/conduit-mesh/conduit/extensions/viz/install"
	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"github.com/conduit-mesh/conduit/pkg/version"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
)

// TapEnv is the proxy setting the injector hook turns on.
const TapEnv = "CONDUIT_PROXY_TAP_ENABLED"

// Viz is the viz extension.
type Viz struct{}

var semver = regexp.MustCompile(`^v?\d+\.\d+\.\d+`)

// Info names the extension; its version is the build's when that is a
// semantic version.
func (Viz) Info() sdk.Info {
	v := version.Version
	if !semver.MatchString(v) {
		v = "0.1.0-dev"
	}
	return sdk.Info{Name: "viz", Version: v, Description: "metrics, edges, routes and a dashboard from the proxies' metrics"}
}

// Commands lists the CLI subcommands.
func (Viz) Commands() []sdk.Command {
	out := make([]sdk.Command, 0, len(cli.Commands))
	for _, c := range cli.Commands {
		out = append(out, sdk.Command{Name: c.Name, Short: c.Short})
	}
	return out
}

// Run runs `mesh viz args...`.
func (Viz) Run(ctx context.Context, inv *sdk.Invocation) error {
	env := &cli.Env{Out: inv.Stdout, Err: inv.Stderr, In: inv.Stdin, Kube: kubeFlags(inv.Kube)}
	root := cli.NewCommand(env)
	root.SetArgs(append([]string{"viz"}, inv.Args...))
	return root.ExecuteContext(ctx)
}

func kubeFlags(k sdk.KubeFlags) cli.KubeFlags {
	return cli.KubeFlags{Kubeconfig: k.Kubeconfig, Context: k.Context, Namespace: k.Namespace, ConduitNamespace: k.ConduitNamespace}
}

func options(req sdk.InstallRequest) install.Options {
	o := install.Options{Values: req.Values}
	if req.Namespace != "" {
		o.Set = append(o.Set, "namespace="+req.Namespace)
	}
	if req.Kube.ConduitNamespace != "" {
		o.Set = append(o.Set, "conduitNamespace="+req.Kube.ConduitNamespace)
	}
	return o
}

// Install renders the chart.
func (Viz) Install(_ context.Context, req sdk.InstallRequest) ([]byte, error) {
	ms, err := install.Render(options(req))
	if err != nil {
		return nil, err
	}
	return install.YAML(ms), nil
}

// Uninstall lists the chart's objects, namespace last.
func (Viz) Uninstall(_ context.Context, req sdk.InstallRequest) ([]byte, error) {
	ms, err := install.Render(options(req))
	if err != nil {
		return nil, err
	}
	return install.UninstallYAML(ms), nil
}

// Check runs the health checks of the viz namespace.
func (Viz) Check(ctx context.Context, kube sdk.KubeFlags) ([]sdk.CheckCategory, error) {
	k, err := cli.Connect(kubeFlags(kube))
	if err != nil {
		return nil, err
	}
	return cli.Check(ctx, k.Client, nil, cli.DefaultVizNamespace), nil
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
func (Viz) PatchPod(_ context.Context, req *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
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

// Interface checks: the SDK declares exactly the capabilities implemented.
var (
	_ sdk.Commander    = Viz{}
	_ sdk.Installer    = Viz{}
	_ sdk.Checker      = Viz{}
	_ sdk.InjectorHook = Viz{}
)
