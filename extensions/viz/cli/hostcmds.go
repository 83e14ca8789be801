package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// HostCommands are the commands mesh serves itself with the plugin's
// Installer and Checker (cli/cmd/plugins.go: it handles them, and their
// --help, before the plugin's commands). They are in viz's command tree only
// so that `mesh viz --help` lists them with the others and `mesh viz help
// install` says how to run them; the plugin never runs them.
var HostCommands = []struct{ Name, Short, Usage string }{
	{"install", "Print the manifests that install viz, for kubectl apply", "mesh viz install [--set key=value] [-f values.yaml] | kubectl apply -f -"},
	{"uninstall", "Print the manifests of viz's resources, for kubectl delete", "mesh viz uninstall | kubectl delete -f -"},
	{"check", "Check viz in the cluster (exit status 1 when a check fails)", "mesh viz check [--viz-namespace NAMESPACE] [-o table|short|json]"},
}

func newHostCmds() []*cobra.Command {
	out := make([]*cobra.Command, 0, len(HostCommands))
	for _, h := range HostCommands {
		c := &cobra.Command{
			Use:                h.Name,
			Short:              h.Short,
			DisableFlagParsing: true, // mesh parses them (check's --viz-namespace too: the plugin declares it)
			RunE: func(*cobra.Command, []string) error {
				return fmt.Errorf("viz: %s is served by mesh, not by the mesh-viz plugin: run '%s' with a mesh of the plugin's version", h.Name, h.Usage)
			},
		}
		c.SetHelpFunc(func(c *cobra.Command, _ []string) {
			fmt.Fprintf(c.OutOrStdout(), "%s.\n\nUsage:\n  %s\n\nIts flags: mesh viz %s --help\n", h.Short, h.Usage, h.Name)
		})
		out = append(out, c)
	}
	return out
}
