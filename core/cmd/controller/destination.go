package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newDestinationCmd runs the destination service (service discovery and
// service profiles for the proxies).
func newDestinationCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "destination",
		Short: "Serve service discovery and service profiles to the proxies",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("destination: not implemented yet")
		},
	}
}
