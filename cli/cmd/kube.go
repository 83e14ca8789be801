package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/conduit-mesh/conduit/pkg/clikit"
)

// Kube bundles the clients a command needs to talk to the cluster selected by
// --kubeconfig and --context. Build it with Options.Kube.
type Kube struct {
	Config    *rest.Config
	Client    kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string // the kubeconfig context's namespace, or -n when given
}

// clientConfig returns the kubeconfig selected by --kubeconfig, --context and -n.
func (o *Options) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		rules.ExplicitPath = o.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	if o.Namespace != "" {
		overrides.Context.Namespace = o.Namespace
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// RESTConfig returns the REST configuration of the selected cluster.
func (o *Options) RESTConfig() (*rest.Config, error) {
	cc := o.clientConfig()
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", clikit.KubeconfigError(cc.ConfigAccess().(*clientcmd.ClientConfigLoadingRules), o.Context, err))
	}
	cfg.UserAgent = "mesh"
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	return cfg, nil
}

// Kube returns the clients of the selected cluster. Commands call it lazily so
// that commands that need no cluster (install --ignore-cluster, version
// --client) work without a kubeconfig. Tests replace o.NewKube to inject fakes.
// The clients are built once and kept: they are built from the flags, which
// are parsed by the time a command runs.
func (o *Options) Kube() (*Kube, error) {
	if o.NewKube != nil {
		return o.NewKube()
	}
	if o.kube != nil {
		return o.kube, nil
	}
	cfg, err := o.RESTConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: clientset: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: dynamic client: %w", err)
	}
	ns, _, err := o.clientConfig().Namespace()
	if err != nil || ns == "" {
		ns = corev1.NamespaceDefault
	}
	o.kube = &Kube{Config: cfg, Client: cs, Dynamic: dyn, Namespace: ns}
	return o.kube, nil
}

// PortForward forwards a free local port on 127.0.0.1 to port of the pod
// ns/pod and returns the local address ("127.0.0.1:NNNNN") and a stop
// function. The forward ends when stop is called or ctx ends.
func (k *Kube) PortForward(ctx context.Context, ns, pod string, port int) (addr string, stop func(), err error) {
	if k.Config == nil {
		return "", nil, errors.New("kubernetes: port-forward needs a REST config")
	}
	p, err := k.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("kubernetes: port-forward: get pod %s/%s: %w", ns, pod, err)
	}
	if p.Status.Phase != corev1.PodRunning {
		return "", nil, fmt.Errorf("kubernetes: port-forward: pod %s/%s is %s, not Running (check it with 'kubectl -n %s describe pod %s')", ns, pod, p.Status.Phase, ns, pod)
	}
	transport, upgrader, err := spdy.RoundTripperFor(k.Config)
	if err != nil {
		return "", nil, fmt.Errorf("kubernetes: port-forward: %w", err)
	}
	u, err := url.Parse(k.Config.Host)
	if err != nil {
		return "", nil, fmt.Errorf("kubernetes: port-forward: parse host %q: %w", k.Config.Host, err)
	}
	u.Path, err = url.JoinPath(u.Path, "api/v1/namespaces", ns, "pods", pod, "portforward")
	if err != nil {
		return "", nil, fmt.Errorf("kubernetes: port-forward: %w", err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)

	local, err := freePort()
	if err != nil {
		return "", nil, err
	}
	stopCh := make(chan struct{})
	readyCh := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("%d:%d", local, port)}, stopCh, readyCh, io.Discard, io.Discard)
	if err != nil {
		return "", nil, fmt.Errorf("kubernetes: port-forward: %w", err)
	}
	errCh := make(chan error, 1)
	go func() { errCh <- fw.ForwardPorts() }()
	var once sync.Once
	stop = func() { once.Do(func() { close(stopCh) }) }
	select {
	case <-readyCh:
	case err := <-errCh:
		return "", nil, fmt.Errorf("kubernetes: port-forward to %s/%s:%d: %w (check that you may create pods/portforward)", ns, pod, port, err)
	case <-ctx.Done():
		stop()
		return "", nil, fmt.Errorf("kubernetes: port-forward to %s/%s:%d: %w", ns, pod, port, ctx.Err())
	}
	go func() {
		<-ctx.Done()
		stop()
	}()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(local)), stop, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("kubernetes: find a free local port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
