package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newIdentityCmd returns `controller identity`, the mesh's certificate authority.
func newIdentityCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "identity",
		Short: "Run the identity service (the mesh's certificate authority)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("identity: not implemented yet")
		},
	}
}
