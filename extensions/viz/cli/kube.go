package cli

import (
	"fmt"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/conduit-mesh/conduit/pkg/clikit"
)

// KubeFlags select the cluster, as the mesh CLI passes them.
type KubeFlags struct {
	Kubeconfig, Context, Namespace, ConduitNamespace string
}

// Kube is a connection to the selected cluster.
type Kube struct {
	Config    *rest.Config
	Client    kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string // -n, or the kubeconfig context's namespace, or "default"
	Context   string // the kubeconfig context: --context, or the current one
}

// explain words err when it is the API server that could not be reached
// (clikit.Unreachable), naming the server and the context; other errors are
// returned as they are.
func (k *Kube) explain(err error) error {
	if !clikit.Unreachable(err) {
		return err
	}
	return fmt.Errorf("viz: %w", clikit.APIServerError(k.Config.Host, k.Context, err))
}

// Connect builds the clients of the cluster k selects.
func Connect(k KubeFlags) (*Kube, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.Kubeconfig != "" {
		rules.ExplicitPath = k.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.Context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("viz: %w", clikit.KubeconfigError(rules, k.Context, err))
	}
	context := k.Context
	if raw, err := cc.RawConfig(); err == nil && context == "" {
		context = raw.CurrentContext
	}
	cfg.UserAgent = "mesh-viz"
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	ns := k.Namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil || ns == "" {
			ns = "default"
		}
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("viz: kubernetes client: %w", err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("viz: kubernetes dynamic client: %w", err)
	}
	return &Kube{Config: cfg, Client: kc, Dynamic: dc, Namespace: ns, Context: context}, nil
}
