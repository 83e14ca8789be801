package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/conduit-mesh/conduit/extensions/viz/metricsapi"
	"github.com/conduit-mesh/conduit/extensions/viz/web"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	"github.com/spf13/cobra"
)

func newWebCmd() *cobra.Command {
	var lf logFlags
	var addr, apiURL string
	var allowedHosts []string
	c := &cobra.Command{
		Use:   "web",
		Short: "Serve the viz dashboard",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := lf.logger("viz-web")
			if err != nil {
				return err
			}
			if u, err := url.Parse(apiURL); err != nil || u.Host == "" {
				return fmt.Errorf("web: --metrics-api-url %q must be an absolute URL", apiURL)
			}
			ctx, cancel := procutil.SignalContext(context.Background())
			defer cancel()
			return serve(ctx, log, addr, web.New(metricsapi.NewHTTPClient(apiURL, nil), log, allowedHosts...))
		},
	}
	lf.register(c)
	c.Flags().StringVar(&addr, "addr", ":8084", "listen address")
	c.Flags().StringVar(&apiURL, "metrics-api-url", "", "URL of the viz metrics API")
	c.Flags().StringSliceVar(&allowedHosts, "allowed-hosts", nil, "host names the dashboard answers to besides localhost and IP addresses (DNS rebinding protection)")
	return c
}
