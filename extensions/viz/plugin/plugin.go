package plugin

import (
	"context"

	"github.com/conduit-mesh/conduit/extensions/viz/cli"
	"github.com/conduit-mesh/conduit/extensions/viz/hooks"
	"github.com/conduit-mesh/conduit/extensions/viz/install"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
)

// Viz is the viz extension as mesh-viz serves it to the CLI: the in-cluster
// hooks (Info, PatchPod) and the CLI's commands, manifests and checks.
type Viz struct{ hooks.Hooks }

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

// Check runs the health checks of viz for `mesh check`, in the namespace
// labelled conduit.dev/extension=viz.
func (v Viz) Check(ctx context.Context, kube sdk.KubeFlags) ([]sdk.CheckCategory, error) {
	return v.CheckWithFlags(ctx, kube, nil)
}

// CheckFlags declares `mesh viz check --viz-namespace NAMESPACE`.
func (Viz) CheckFlags() []sdk.CheckFlag {
	return []sdk.CheckFlag{{Name: cli.VizNamespaceFlag, Usage: cli.VizNamespaceUsage}}
}

// connect builds the clients of the cluster (a fake in tests).
var connect = cli.Connect

// CheckWithFlags runs the health checks of viz in the namespace of
// --viz-namespace; without it ("") in the namespace labelled
// conduit.dev/extension=viz.
func (Viz) CheckWithFlags(ctx context.Context, kube sdk.KubeFlags, flags map[string]string) ([]sdk.CheckCategory, error) {
	k, err := connect(kubeFlags(kube))
	if err != nil {
		return nil, err
	}
	return cli.Check(ctx, k.Client, nil, flags[cli.VizNamespaceFlag]), nil
}

// Interface checks: the SDK declares exactly the capabilities implemented.
var (
	_ sdk.Commander    = Viz{}
	_ sdk.Installer    = Viz{}
	_ sdk.FlagChecker  = Viz{}
	_ sdk.InjectorHook = Viz{}
)
