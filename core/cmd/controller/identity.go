package main

import (
	"fmt"
	"os"
	"time"

	"github.com/conduit-mesh/conduit/core/identity"
	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	"github.com/conduit-mesh/conduit/pkg/version"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// newIdentityCmd returns `controller identity`, the mesh's certificate authority.
func newIdentityCmd() *cobra.Command {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "conduit"
	}
	cfg := identity.ServerConfig{
		Config: identity.Config{ControlPlaneNamespace: ns, TrustDomain: "cluster.local", CertLifetime: 24 * time.Hour},
	}
	var logLevel, logFormat, kubeconfig string
	var qps float32
	var burst int
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Run the identity service (the mesh's certificate authority)",
		Long: `identity serves conduit.identity.v1.Identity: it validates a proxy's ServiceAccount
token with a TokenReview and signs a short-lived certificate for its workload identity.
The issuer comes from a kubernetes.io/tls Secret (the cert-manager layout) and the
trust anchors from a ConfigMap; both are reloaded when they change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := logging.ParseLevel(logLevel)
			if err != nil {
				return err
			}
			log := logging.New(os.Stderr, "identity", level, logFormat)
			procutil.Setup(log)
			ctx, stop := procutil.SignalContext(cmd.Context())
			defer stop()

			restCfg, err := kubeConfig(kubeconfig)
			if err != nil {
				return err
			}
			restCfg.UserAgent = "conduit-identity/" + version.Version
			// Every Certify costs a TokenReview: client-go's default (5/s, burst 10)
			// would queue a rollout of a few hundred pods for a minute.
			restCfg.QPS, restCfg.Burst = qps, burst
			client, err := kubernetes.NewForConfig(restCfg)
			if err != nil {
				return fmt.Errorf("identity: kubernetes client: %w", err)
			}
			log.Info("starting", "version", version.Version, "namespace", cfg.ControlPlaneNamespace,
				"trust_domain", cfg.TrustDomain, "cert_lifetime", cfg.CertLifetime.String(), "token_audience", cfg.TokenAudience)
			return identity.Run(ctx, cfg, client, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", ":8080", "address of the gRPC server (plaintext: the pod's proxy terminates TLS)")
	f.StringVar(&cfg.AdminAddr, "admin-addr", ":9990", "address of the admin server (/metrics, /ready, /live)")
	f.StringVar(&cfg.ControlPlaneNamespace, "namespace", ns, "control-plane namespace (defaults to $POD_NAMESPACE when set)")
	f.StringVar(&cfg.TrustDomain, "trust-domain", cfg.TrustDomain, "trust domain ending every identity")
	f.StringVar(&cfg.IssuerSecret, "issuer-secret", "conduit-identity-issuer", "kubernetes.io/tls Secret holding the issuer (tls.crt, tls.key, ca.crt)")
	f.StringVar(&cfg.TrustAnchorsConfigMap, "trust-anchors-configmap", "conduit-identity-trust-roots", "ConfigMap holding the trust anchor bundle (key "+identity.AnchorBundleKey+")")
	f.DurationVar(&cfg.CertLifetime, "cert-lifetime", cfg.CertLifetime, "validity of the workload certificates")
	f.StringVar(&cfg.TokenAudience, "token-audience", "identity.conduit.dev", "audience the ServiceAccount tokens must carry")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "json", "log format: json or text")
	f.Float32Var(&qps, "kube-api-qps", 100, "requests per second to the API server (each Certify makes a TokenReview)")
	f.IntVar(&burst, "kube-api-burst", 200, "burst of requests to the API server")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to use outside a cluster (default: the in-cluster configuration)")
	return cmd
}

// kubeConfig is the in-cluster configuration, or the given kubeconfig file.
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("identity: in-cluster kubernetes configuration: %w (outside a cluster, pass --kubeconfig)", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("identity: load kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}
