package cmd

import (
	"encoding/json"
	"fmt"

	"github.com/conduit-mesh/conduit/pkg/version"
	"github.com/spf13/cobra"
)

func newVersionCmd(o *Options) *cobra.Command {
	var client, short bool
	var output string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the client's and the control plane's versions",
		Example: `  mesh version --client
  mesh version --short
  mesh version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			switch output {
			case "json":
				enc := json.NewEncoder(o.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"client": info})
			case "", "text":
			default:
				return fmt.Errorf("version: unknown output format %q (accepted: text, json)", output)
			}
			if short {
				fmt.Fprintln(o.Out, info.Version)
				return nil
			}
			fmt.Fprintf(o.Out, "Client version: %s\nCommit: %s\nBuilt: %s\nGo: %s %s\n", info.Version, info.Commit, info.Date, info.GoVersion, info.Platform)
			if !client {
				fmt.Fprintln(o.Out, "Server version: unavailable (not yet implemented by this build)")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&client, "client", false, "print the client version only")
	c.Flags().BoolVar(&short, "short", false, "print the version number only")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}
