package main

import (
	"github.com/spf13/cobra"
)

// newInjectorCmd returns `controller injector`, the proxy-injecting
// mutating admission webhook (core/injector).
func newInjectorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "injector",
		Short: "Run the proxy injector (mutating admission webhook)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nil
		},
	}
	return cmd
}
