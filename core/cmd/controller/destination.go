package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/conduit-mesh/conduit/core/destination"
	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	"github.com/conduit-mesh/conduit/pkg/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// newDestinationCmd returns `controller destination`, the service discovery
// and service profile service of the proxies.
func newDestinationCmd() *cobra.Command {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "conduit"
	}
	cfg := destination.RunConfig{Config: destination.Config{ControllerNamespace: ns}}
	var logLevel, logFormat, kubeconfig, pluginDir string
	cmd := &cobra.Command{
		Use:   "destination",
		Short: "Run the destination service (service discovery and service profiles)",
		Long: `destination serves conduit.destination.v1.Destination: Get streams the endpoints of
an authority (a Service, a pod of a headless Service, or a pod IP) with each pod's identity,
protocol hint and metric labels; GetProfile streams its ServiceProfile (routes, retry budget,
traffic split). It watches Services, EndpointSlices, Pods, Nodes, ServiceProfiles and, when
their CRD exists, SMI TrafficSplits. See docs/destination.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := logging.ParseLevel(logLevel)
			if err != nil {
				return err
			}
			log := logging.New(os.Stderr, "destination", level, logFormat)
			procutil.Setup(log)
			ctx, stop := procutil.SignalContext(cmd.Context())
			defer stop()

			restCfg, err := destinationKubeConfig(kubeconfig)
			if err != nil {
				return err
			}
			restCfg.UserAgent = "conduit-destination/" + version.Version
			restCfg.QPS, restCfg.Burst = 50, 100
			client, err := kubernetes.NewForConfig(restCfg)
			if err != nil {
				return fmt.Errorf("destination: kubernetes client: %w", err)
			}
			dyn, err := dynamic.NewForConfig(restCfg)
			if err != nil {
				return fmt.Errorf("destination: kubernetes dynamic client: %w", err)
			}
			cfg.Client, cfg.Dynamic, cfg.Logger = client, dyn, log
			// Extensions' destination hooks (docs/extensions.md): endpoint
			// metadata from the allowed extensions' hook binaries, run as
			// go-plugin subprocesses; a failing one is skipped (logged,
			// counted on /metrics).
			cfg.Registry = prometheus.NewRegistry()
			hooks := pluginhost.StartHooks(ctx, client, pluginhost.HooksOptions{
				Logger:      log.With("subsystem", "extension-hooks"),
				Namespace:   cfg.ControllerNamespace,
				PluginDir:   pluginDir,
				Registerer:  cfg.Registry,
				HostVersion: version.Version,
			})
			if cfg.Annotators == nil {
				cfg.Annotators = destination.DefaultAnnotators
			}
			cfg.Annotators = append(slices.Clip(cfg.Annotators), &pluginhost.EndpointAnnotator{Hooks: hooks})
			log.Info("starting", "version", version.Version, "controller_namespace", cfg.ControllerNamespace)
			return destination.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", ":8086", "address of the gRPC server (plaintext: the pod's proxy terminates mTLS)")
	f.StringVar(&cfg.AdminAddr, "admin-addr", ":9996", "address of the admin server (/metrics, /ready, /live)")
	f.StringVar(&cfg.ControllerNamespace, "controller-namespace", ns, "control-plane namespace (defaults to $POD_NAMESPACE when set)")
	f.StringVar(&cfg.ClusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	f.StringVar(&cfg.TrustDomain, "trust-domain", "cluster.local", "trust domain ending every workload identity")
	f.StringVar(&cfg.TrustDomain, "identity-trust-domain", "cluster.local", "alias of --trust-domain")
	_ = f.MarkHidden("identity-trust-domain")
	f.StringVar(&cfg.DefaultOpaquePorts, "default-opaque-ports", destination.DefaultOpaquePorts, "ports treated as opaque when neither the pod nor the Service sets "+destination.OpaquePortsAnnotation)
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", 10*time.Second, "how long a shutdown waits for streams to end")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "json", "log format: json or text")
	f.StringVar(&pluginDir, "plugin-dir", defaultPluginDir(), "writable directory where the allowed extensions' hook binaries are fetched and run")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to use outside a cluster (default: the in-cluster configuration)")
	return cmd
}

// destinationKubeConfig is the in-cluster configuration, or the given kubeconfig file.
func destinationKubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("destination: in-cluster kubernetes configuration: %w (outside a cluster, pass --kubeconfig)", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("destination: load kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}
