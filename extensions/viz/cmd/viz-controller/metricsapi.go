package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/conduit-mesh/conduit/extensions/viz/hooks"
	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"github.com/conduit-mesh/conduit/extensions/viz/metricsapi"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func newMetricsAPICmd() *cobra.Command {
	var lf logFlags
	var addr, hooksAddr, promURL, cpNS, trustDomain, clusterDomain string
	c := &cobra.Command{
		Use:   "metrics-api",
		Short: "Serve the viz metrics API (and the injector hook)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := lf.logger("viz-metrics-api")
			if err != nil {
				return err
			}
			if u, err := url.Parse(promURL); err != nil || u.Host == "" {
				return fmt.Errorf("metrics-api: --prometheus-url %q must be an absolute URL", promURL)
			}
			cfg, err := rest.InClusterConfig()
			if err != nil {
				return fmt.Errorf("metrics-api: in-cluster config: %w", err)
			}
			cfg.UserAgent = "conduit-viz-metrics-api"
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("metrics-api: kubernetes client: %w", err)
			}
			dc, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("metrics-api: kubernetes dynamic client: %w", err)
			}
			eng := &metrics.Engine{
				Prom: &metrics.Prometheus{URL: promURL}, Kube: kc, Dynamic: dc,
				ControlPlaneNamespace: cpNS, TrustDomain: trustDomain, ClusterDomain: clusterDomain,
			}
			ctx, cancel := procutil.SignalContext(context.Background())
			defer cancel()
			// Either server failing stops both.
			errCh := make(chan error, 2)
			n := 1
			go func() { errCh <- serve(ctx, log, addr, metricsapi.Handler(eng, log)) }()
			if hooksAddr != "" {
				n++
				go func() {
					log.Info("handing out the hook plugin (this binary) to the control plane", "addr", hooksAddr)
					errCh <- sdk.ServeHooks(ctx, hooksAddr, hooks.Hooks{})
				}()
			}
			var first error
			for range n {
				if err := <-errCh; err != nil && first == nil {
					first = err
				}
				cancel()
			}
			return first
		},
	}
	lf.register(c)
	c.Flags().StringVar(&addr, "addr", ":8085", "listen address of the HTTP API")
	c.Flags().StringVar(&hooksAddr, "hooks-addr", "", "listen address of the plugin SDK's hooks (gRPC); empty: none")
	c.Flags().StringVar(&promURL, "prometheus-url", "", "URL of Prometheus")
	c.Flags().StringVar(&cpNS, "conduit-namespace", "conduit", "namespace of the Conduit control plane (identities)")
	c.Flags().StringVar(&trustDomain, "trust-domain", "cluster.local", "trust domain (identities)")
	c.Flags().StringVar(&clusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain (service profiles)")
	return c
}
