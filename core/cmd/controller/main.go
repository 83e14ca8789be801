// Command controller is the multi-call binary of Conduit's control plane:
// `controller identity`, `controller destination` and `controller injector`
// each run one component. Each subcommand lives in its own file here.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "controller",
		Short:         "Conduit control-plane components",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newIdentityCmd(), newDestinationCmd(), newInjectorCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
}
