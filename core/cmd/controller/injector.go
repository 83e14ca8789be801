package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/conduit-mesh/conduit/core/injector"
	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	"github.com/conduit-mesh/conduit/pkg/version"
)

// newInjectorCmd returns `controller injector`, the proxy-injecting
// mutating admission webhook (core/injector).
func newInjectorCmd() *cobra.Command {
	var (
		opts                injector.Options
		sidecarMode         string
		kubeconfig          string
		pluginDir           string
		logLevel, logFormat string
		shutdownDelay       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "injector",
		Short: "Run the proxy injector (mutating admission webhook)",
		Long: `Run the proxy injector: an HTTPS admission webhook (/inject) that adds the
Conduit proxy and proxy-init to pods annotated conduit.dev/inject: enabled
(or in namespaces so annotated). See docs/injector.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := logging.ParseLevel(logLevel)
			if err != nil {
				return err
			}
			log := logging.New(os.Stderr, "injector", level, logFormat)
			procutil.Setup(log)
			signal, cancel := procutil.SignalContext(cmd.Context())
			defer cancel()
			// Keep serving (webhook, informers, extension hooks) for the
			// delay after SIGTERM, while kube-proxy's rules still send the
			// API server's calls here: see injector.DefaultShutdownDelay.
			terminating := make(chan struct{})
			opts.Terminating = terminating
			ctx, stop := procutil.DelayCancel(signal, shutdownDelay, func() {
				log.Info("terminating: serving for the shutdown delay while the Service drops this replica", "delay", shutdownDelay.String())
				close(terminating)
			})
			defer stop()
			var cfg *rest.Config
			if kubeconfig != "" {
				cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
			} else {
				cfg, err = rest.InClusterConfig()
			}
			if err != nil {
				return fmt.Errorf("injector: kubernetes client config: %w", err)
			}
			cfg.UserAgent = "conduit-injector"
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("injector: kubernetes client: %w", err)
			}
			opts.SidecarMode = injector.SidecarMode(sidecarMode)
			// Extensions' injector hooks (docs/extensions.md): the binaries
			// of the extensions in the allow-list, fetched into pluginDir
			// and run as go-plugin subprocesses; a failing, refused or
			// absent one is logged, recorded as an Event and counted on the
			// injector's /metrics, never fatal.
			opts.Registry = prometheus.NewRegistry()
			hooks := pluginhost.StartHooks(ctx, client, pluginhost.HooksOptions{
				Logger:      log.With("subsystem", "extension-hooks"),
				Namespace:   opts.Namespace,
				PluginDir:   pluginDir,
				Events:      &injector.KubeEvents{Client: client, Log: log, Component: injector.ServiceName},
				Registerer:  opts.Registry,
				HostVersion: version.Version,
			})
			opts.Contributors = append(opts.Contributors, pluginhost.InjectorContributor{Hooks: hooks})
			return injector.Run(ctx, client, opts, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Namespace, "conduit-namespace", injector.DefaultNamespace, "control-plane namespace (never injected; holds conduit-config and conduit-injector-tls)")
	f.StringVar(&opts.Addr, "addr", ":8443", "HTTPS address of the admission webhook")
	f.StringVar(&opts.AdminAddr, "admin-addr", ":9995", "address of /metrics, /ready and /live")
	f.StringVar(&sidecarMode, "sidecar-mode", string(injector.SidecarAuto), "how the proxy is added: auto (native on Kubernetes >= 1.29), native or regular")
	f.DurationVar(&opts.CertCheckInterval, "cert-check-interval", 0, "how often to check the serving certificate and caBundle (default 10m)")
	f.StringVar(&opts.WebhookConfig, "webhook-config-name", injector.WebhookConfigName, "MutatingWebhookConfiguration whose caBundle the injector keeps in sync")
	f.StringVar(&pluginDir, "plugin-dir", defaultPluginDir(), "writable directory where the allowed extensions' hook binaries are fetched and run")
	f.DurationVar(&shutdownDelay, "shutdown-delay", injector.DefaultShutdownDelay, "on SIGTERM, keep serving this long (while the Service's endpoints drop this replica) before draining")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "json", "log format: json or text")
	return cmd
}

// defaultPluginDir is where hook binaries go when --plugin-dir is not given
// (the chart gives an emptyDir): a directory of the temporary directory.
func defaultPluginDir() string { return filepath.Join(os.TempDir(), "conduit-plugins") }
