package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strconv"
	"sync"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// WebPort is the dashboard's container port.
const WebPort = 8084

func newDashboardCmd(env *Env, vizNS *string) *cobra.Command {
	var port int
	var address, show string
	c := &cobra.Command{
		Use:   "dashboard",
		Short: "Open the viz dashboard through a port-forward to the web pod",
		Long: `dashboard port-forwards a local port to the viz web pod and prints the dashboard's
URL (--show url) or opens it in a browser (--show browser); it runs until interrupted.`,
		Example: `  mesh viz dashboard
  mesh viz dashboard --port 8084 --show url`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if show != "url" && show != "browser" {
				return fmt.Errorf("viz: --show %q: accepted values are url and browser", show)
			}
			if port < 0 || port > 65535 {
				return fmt.Errorf("viz: --port %d is not a port (0 picks a free one)", port)
			}
			k, err := Connect(env.Kube)
			if err != nil {
				return err
			}
			return dashboard(cmd.Context(), k, *vizNS, address, port, show, env.Out, env.Err)
		},
	}
	c.Flags().IntVar(&port, "port", 50750, "local port (0: any free port)")
	c.Flags().StringVar(&address, "address", "localhost", "local address to listen on")
	c.Flags().StringVar(&show, "show", "url", "url: print the URL; browser: also open it")
	return c
}

func readyPod(ctx context.Context, k *Kube, ns, component string) (string, error) {
	pods, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "conduit.dev/viz-component=" + component})
	if err != nil {
		return "", fmt.Errorf("viz: listing %s pods in %s: %w", component, ns, err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return p.Name, nil
			}
		}
	}
	return "", fmt.Errorf("viz: no ready %s pod in namespace %s (is viz installed? run 'mesh viz check')", component, ns)
}

// portForward forwards a local port on address (0: any free port) to
// remotePort of pod; stop ends it. done reports the end of the forward.
func portForward(k *Kube, ns, pod, address string, localPort, remotePort int, errw io.Writer) (port int, stop func(), done <-chan error, err error) {
	u := k.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(k.Config)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("viz: port-forward transport: %w", err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stopCh, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{address}, []string{fmt.Sprintf("%d:%d", localPort, remotePort)}, stopCh, ready, io.Discard, errw)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("viz: port-forward: %w", err)
	}
	errCh := make(chan error, 1)
	go func() { errCh <- fw.ForwardPorts() }()
	var once sync.Once
	stop = func() { once.Do(func() { close(stopCh) }) }
	select {
	case <-ready:
	case err := <-errCh:
		return 0, nil, nil, fmt.Errorf("viz: port-forward to %s/%s: %w", ns, pod, err)
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		stop()
		return 0, nil, nil, fmt.Errorf("viz: port-forward ports: %v", err)
	}
	return int(ports[0].Local), stop, errCh, nil
}

func dashboard(ctx context.Context, k *Kube, vizNS, address string, port int, show string, out, errw io.Writer) error {
	ns, err := ResolveVizNamespace(ctx, k.Client, vizNS)
	if err != nil {
		return k.explain(err)
	}
	pod, err := readyPod(ctx, k, ns, "web")
	if err != nil {
		return k.explain(err)
	}
	local, stop, done, err := portForward(k, ns, pod, address, port, WebPort, errw)
	if err != nil {
		return err
	}
	defer stop()
	dash := (&url.URL{Scheme: "http", Host: net.JoinHostPort(address, strconv.Itoa(local)), Path: "/"}).String()
	fmt.Fprintf(out, "Conduit viz dashboard available at:\n%s\n", dash)
	if show == "browser" {
		if err := openBrowser(dash); err != nil {
			fmt.Fprintf(errw, "could not open a browser (%v): open the URL above\n", err)
		}
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		if err != nil {
			return fmt.Errorf("viz: port-forward ended: %w", err)
		}
		return nil
	}
}

func openBrowser(u string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	return exec.Command(name, u).Start()
}
