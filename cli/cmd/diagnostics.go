package cmd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/pkg/logging"
)

// Admin ports (docs/architecture.md).
const proxyAdminPort = 4191

var controllerAdminPorts = map[string]int{"identity": 9990, "destination": 9996, "injector": 9995}

// forwardFunc opens a port-forward to ns/pod:port; tests replace it.
type forwardFunc func(ctx context.Context, k *Kube, ns, pod string, port int) (addr string, stop func(), err error)

var portForward forwardFunc = func(ctx context.Context, k *Kube, ns, pod string, port int) (string, func(), error) {
	return k.PortForward(ctx, ns, pod, port)
}

func newDiagnosticsCmd(o *Options) *cobra.Command {
	c := &cobra.Command{
		Use:     "diagnostics",
		Aliases: []string{"diag"},
		Short:   "Fetch metrics and discovery state from the mesh's components",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	c.AddCommand(newProxyMetricsCmd(o), newProxyLogLevelCmd(o), newControllerMetricsCmd(o))
	c.AddCommand(diagnosticsExtra(o)...)
	return c
}

func newProxyMetricsCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "proxy-metrics POD",
		Short: "Print the Prometheus metrics of a pod's proxy",
		Long: `proxy-metrics port-forwards to the proxy's admin port (4191) of the pod and
prints its /metrics.

` + podRefHelp + `
With a workload, each pod's metrics follow a comment line
"# POD <namespace>/<name> (<i> of <n>)".`,
		Example: `  mesh diagnostics proxy-metrics -n emojivoto web-5d8c7b9f4-x2kq7
  mesh diagnostics proxy-metrics -n emojivoto deploy/web`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, ref, err := o.proxyPods(cmd.Context(), "diagnostics", args[0])
			if err != nil {
				return err
			}
			return ref.each(func(i int, pod string) error {
				body, err := fetchMetrics(cmd.Context(), k, ref.ns, pod, proxyAdminPort)
				if err != nil {
					return notMeshed(err, ref.ns, pod)
				}
				if ref.workload {
					fmt.Fprintf(o.Out, "#\n# POD %s/%s (%d of %d)\n#\n", ref.ns, pod, i+1, len(ref.pods))
				}
				_, err = o.Out.Write(body)
				return err
			})
		},
	}
}

// notMeshed wraps a failed call to a pod's proxy with how to check that the
// pod has one.
func notMeshed(err error, ns, pod string) error {
	return fmt.Errorf("diagnostics: %w (is %s/%s meshed? 'kubectl -n %s get pod %s -o jsonpath={.metadata.labels}')", err, ns, pod, ns, pod)
}

func newControllerMetricsCmd(o *Options) *cobra.Command {
	var component string
	c := &cobra.Command{
		Use:   "controller-metrics",
		Short: "Print the Prometheus metrics of the control plane's controllers",
		Long: `controller-metrics port-forwards to the admin port of every control-plane pod
(identity 9990, destination 9996, injector 9995) and prints its /metrics,
each preceded by a comment naming the pod.`,
		Example: `  mesh diagnostics controller-metrics
  mesh diagnostics controller-metrics --component destination`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sel := componentLabel
			if component != "" {
				if _, ok := controllerAdminPorts[component]; !ok {
					return fmt.Errorf("diagnostics: unknown component %q (accepted: destination, identity, injector)", component)
				}
				sel += "=" + component
			}
			k, err := o.Kube()
			if err != nil {
				return fmt.Errorf("diagnostics: %w", err)
			}
			ns := o.controlPlaneNS()
			ctx := cmd.Context()
			pods, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				return fmt.Errorf("diagnostics: list control-plane pods: %w", err)
			}
			if len(pods.Items) == 0 {
				return fmt.Errorf("diagnostics: no control-plane pod in namespace %s: is Conduit installed? ('mesh check')", ns)
			}
			slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
			var failed []string
			for _, p := range pods.Items {
				port := controllerAdminPorts[p.Labels[componentLabel]]
				if port == 0 {
					continue
				}
				body, err := fetchMetrics(ctx, k, ns, p.Name, port)
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", p.Name, err))
					continue
				}
				fmt.Fprintf(o.Out, "#\n# POD %s (admin port %d)\n#\n", p.Name, port)
				if _, err := o.Out.Write(body); err != nil {
					return err
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("diagnostics: could not fetch the metrics of %s (check the pods with 'mesh check')", strings.Join(failed, "; "))
			}
			return nil
		},
	}
	c.Flags().StringVar(&component, "component", "", "only this controller: identity, destination or injector")
	return c
}

// fetchMetrics port-forwards to ns/pod:port and GETs /metrics.
func fetchMetrics(ctx context.Context, k *Kube, ns, pod string, port int) ([]byte, error) {
	return adminRequest(ctx, k, ns, pod, port, http.MethodGet, "/metrics", "")
}

// adminRequest port-forwards to ns/pod:port and sends method path with
// body; an answer other than 200 is an error quoting the answer's body.
func adminRequest(ctx context.Context, k *Kube, ns, pod string, port int, method, path, body string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addr, stop, err := portForward(ctx, k, ns, pod, port)
	if err != nil {
		return nil, err
	}
	defer stop()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s/%s:%d: %w", method, path, ns, pod, port, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s of %s/%s:%d: %w", path, ns, pod, port, err)
	}
	if resp.StatusCode != http.StatusOK {
		if msg := strings.TrimSpace(string(answer)); msg != "" && len(msg) < 300 {
			return nil, fmt.Errorf("%s %s on %s/%s:%d: %s: %s", method, path, ns, pod, port, resp.Status, msg)
		}
		return nil, fmt.Errorf("%s %s on %s/%s:%d: %s", method, path, ns, pod, port, resp.Status)
	}
	return answer, nil
}

func newProxyLogLevelCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "proxy-log-level POD [LEVEL]",
		Short: "Print or change the log level of a pod's proxy, without a restart",
		Long: `proxy-log-level port-forwards to the proxy's admin port (4191) of the pod.
Without LEVEL it prints the proxy's log level; with LEVEL (debug, info, warn or
error) it sets it, until the proxy restarts, and prints the new level. The
proxy logs the change. The lasting setting is the pod's annotation
config.conduit.dev/proxy-log-level, which applies when the pod is re-created.

` + podRefHelp + `
With a workload, one line per pod: "<namespace>/<name>: <level>".`,
		Example: `  # Debug one pod's proxy, then back to the default.
  mesh diagnostics proxy-log-level -n emojivoto web-5d8c7b9f4-x2kq7 debug
  kubectl logs -n emojivoto web-5d8c7b9f4-x2kq7 -c conduit-proxy -f
  mesh diagnostics proxy-log-level -n emojivoto web-5d8c7b9f4-x2kq7 info
  # Every pod of a Deployment.
  mesh diagnostics proxy-log-level -n emojivoto deploy/web debug`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			method, body := http.MethodGet, ""
			if len(args) == 2 {
				if _, err := logging.ParseNamedLevel(args[1]); err != nil {
					return fmt.Errorf("diagnostics: invalid level %q (accepted: debug, info, warn, error)", args[1])
				}
				method, body = http.MethodPut, args[1]
			}
			k, ref, err := o.proxyPods(cmd.Context(), "diagnostics", args[0])
			if err != nil {
				return err
			}
			return ref.each(func(_ int, pod string) error {
				answer, err := adminRequest(cmd.Context(), k, ref.ns, pod, proxyAdminPort, method, "/proxy-log-level", body)
				if err != nil {
					return notMeshed(err, ref.ns, pod)
				}
				if ref.workload {
					fmt.Fprintf(o.Out, "%s/%s: %s\n", ref.ns, pod, strings.TrimSpace(string(answer)))
					return nil
				}
				_, err = o.Out.Write(answer)
				return err
			})
		},
	}
}
