package cmd

import "github.com/spf13/cobra"

// diagnosticsExtra returns the diagnostics subcommands written by other
// components (endpoints, by the destination component).
func diagnosticsExtra(_ *Options) []*cobra.Command {
	return nil
}
