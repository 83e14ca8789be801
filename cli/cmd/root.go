package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/conduit-mesh/conduit/pkg/clikit"
)

// Options are the flags every command shares, named as kubectl names them.
type Options struct {
	Kubeconfig string
	Context    string
	Namespace  string
	// ControlPlaneNamespace is where the core is installed.
	ControlPlaneNamespace string
	Out, Err              io.Writer
	In                    io.Reader
	// NewKube, when set, replaces the clients built from the kubeconfig (tests use fakes).
	NewKube func() (*Kube, error)

	// kube is the clients Kube built from the kubeconfig: a command that
	// asks twice (diagnostics endpoints does) gets them once.
	kube *Kube
}

// exitError carries an exit code through cobra without printing twice.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// NewRootCmd builds the `mesh` command tree.
func NewRootCmd(o *Options) *cobra.Command {
	root := &cobra.Command{
		Use:   "mesh",
		Short: "mesh manages the Conduit service mesh",
		Long: `mesh installs, checks and operates Conduit, a minimal, fast and secure service mesh
for Kubernetes. The core (proxy, identity, destination, injector) is installed with
'mesh install'; extensions such as viz are plugins run as 'mesh <extension> ...'.

Get started:
  mesh install --crds | kubectl apply -f -
  mesh install | kubectl apply -f -
  mesh check`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(o.Out)
	root.SetErr(o.Err)
	root.SetIn(o.In)
	pf := root.PersistentFlags()
	pf.StringVar(&o.Kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	pf.StringVar(&o.Context, "context", "", "name of the kubeconfig context to use")
	pf.StringVarP(&o.Namespace, "namespace", "n", "", "namespace of the workloads a command looks at (default: the kubeconfig context's)")
	pf.StringVar(&o.ControlPlaneNamespace, "conduit-namespace", "conduit", "namespace of the Conduit control plane")

	root.AddCommand(
		newVersionCmd(o),
		newInstallCmd(o),
		newUpgradeCmd(o),
		newUninstallCmd(o),
		newCheckCmd(o),
		newDiagnosticsCmd(o),
		newExtensionsCmd(o),
		newIdentityCmd(o),
		newProfileCmd(o),
		newInjectCmd(o),
		newUninjectCmd(o),
	)
	root.InitDefaultCompletionCmd() // now, so that clikit.TidyUsageErrors sees it
	clikit.TidyUsageErrors(root)
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute() int {
	clikit.QuietConnectionEnds()
	o := &Options{Out: os.Stdout, Err: os.Stderr, In: os.Stdin}
	root := NewRootCmd(o)
	if code, ok := RunPlugin(context.Background(), o, root, os.Args[1:]); ok { // mesh <extension> ...: plugins.go
		return code
	}
	if err := root.ExecuteContext(context.Background()); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(o.Err, "Error:", err)
		return 1
	}
	return 0
}
