package cmd

import "github.com/spf13/cobra"

// diagnosticsExtra returns the diagnostics subcommands written by other
// components: endpoints and profile (destination, diagnostics_endpoints.go and
// diagnostics_profile.go).
func diagnosticsExtra(o *Options) []*cobra.Command {
	return []*cobra.Command{newDiagnosticsEndpointsCmd(o), newDiagnosticsProfileCmd(o)}
}
