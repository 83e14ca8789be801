package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

func newExtensionsAllowCmd(o *Options) *cobra.Command {
	var digest, output, policyFlag string
	var wait time.Duration
	c := &cobra.Command{
		Use:   "allow NAME",
		Short: "Let the control plane run an installed extension's hooks, pinned to its binary's SHA-256",
		Long: `The injector and destination run an extension's hooks (its injector hook, its
destination hook) as plugins inside their own pods, with their permissions. They
run only the extensions listed in the ConfigMap conduit-extension-allowlist of
the control plane's namespace, each pinned to the SHA-256 of its hook binary.

allow fetches the hook binary that the installed extension hands out (through a
port-forward to the pod behind its conduit.dev/injector-hook address), hashes
it, and writes the digest into the allow-list; or pins the digest you give with
--sha256 (for example the one published with a release) without fetching. The
control plane picks the change up within seconds. A binary whose digest differs
(an upgraded or tampered image) is refused until you allow it again.

--failure-policy Fail makes the injector refuse pods when the extension's
injector hook fails or does not run (for a patch pods cannot do without); the
default, Ignore, injects them without its patch, with a warning and an Event.

allow then waits (--wait, default 2m) until every ready pod of the control-plane
components that call the extension's hooks (the injector for an injector hook,
destination for a destination hook) runs the allowed binary, read from their
admin metrics: a pod created after allow returns gets the hook's patch. It fails
when one refuses the binary (its digest is not the allowed one), or at the
timeout, naming what each pod reports; --wait 0 returns once the allow-list is
written.

-o yaml prints the allow-list ConfigMap instead of writing it (for GitOps).`,
		Example: `  mesh extensions allow viz
  mesh extensions allow hello --sha256 sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
  mesh extensions allow viz -o yaml > allowlist.yaml
  mesh extensions allow viz --wait 0      # do not wait for the control plane`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if output != "" && output != "yaml" {
				return fmt.Errorf("extensions allow: unknown output format %q (accepted: yaml)", output)
			}
			policy, err := pluginhost.ParseFailurePolicy(policyFlag)
			if err != nil {
				return fmt.Errorf("extensions allow: --failure-policy: %w", err)
			}
			k, err := o.Kube()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ce, err := clusterExtension(ctx, k, name)
			if err != nil {
				return err
			}
			addr := ce.InjectorHook
			if addr == "" {
				addr = ce.DestinationHook
			}
			if addr == "" {
				return fmt.Errorf("extensions allow: the extension %q (namespace %s) serves no control-plane hook (no %s or %s annotation): there is nothing to allow",
					name, ce.Namespace, pluginhost.AnnotationInjectorHook, pluginhost.AnnotationDestinationHook)
			}
			if digest != "" {
				if digest, err = pluginhost.ParseDigest(digest); err != nil {
					return fmt.Errorf("extensions allow: --sha256: %w", err)
				}
			} else {
				size, sum, where, err := fetchHookDigest(ctx, k, ce, addr)
				if err != nil {
					return err
				}
				digest = sum
				fmt.Fprintf(o.Err, "Fetched the hook binary of %s from %s: %d bytes, sha256:%s\n", name, where, size, sum)
			}
			al, bad, err := pluginhost.ReadAllowList(ctx, k.Client, o.ControlPlaneNamespace)
			if err != nil {
				return fmt.Errorf("extensions allow: %w", err)
			}
			for _, e := range bad {
				fmt.Fprintf(o.Err, "Warning: %v (the entry is replaced or kept as it is)\n", e)
			}
			entry := pluginhost.AllowEntry{SHA256: digest, FailurePolicy: policy}
			al[name] = entry
			if output == "yaml" {
				return printAllowList(o, al)
			}
			if err := writeAllowList(ctx, k, o.ControlPlaneNamespace, name, entry.String(), false); err != nil {
				return err
			}
			if wait <= 0 {
				fmt.Fprintf(o.Out, "Extension %s allowed (sha256:%s, failure policy %s): the control plane runs its hooks within seconds.\n", name, digest, policy)
				return nil
			}
			fmt.Fprintf(o.Out, "Extension %s allowed (sha256:%s, failure policy %s).\n", name, digest, policy)
			ns, comps := o.controlPlaneNS(), hookComponents(ce)
			states, err := waitHooks(ctx, k, ns, name, entry, comps, wait,
				func(s podHookState) bool { return s.runs(entry) },
				func(s podHookState) error {
					if s.state == pluginhost.StateRefused && s.about(entry) {
						return fmt.Errorf("%s refused the binary: the extension hands out a binary whose SHA-256 is not %s", s.pod, digest)
					}
					return nil
				})
			if err != nil {
				return fmt.Errorf("extensions allow: %s is in the allow-list, but the control plane does not run its hooks: %w (see %s)",
					name, err, hookLogs(ns, comps))
			}
			fmt.Fprintf(o.Out, "The control plane runs its hooks from now on (%s).\n", podNames(states))
			return nil
		},
	}
	c.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for the control plane to run the allowed binary (0: do not wait)")
	c.Flags().StringVar(&digest, "sha256", "", "pin this digest instead of fetching the binary from the cluster")
	c.Flags().StringVar(&policyFlag, "failure-policy", "Ignore", "what a failing injector hook does to the pod: Ignore (inject without its patch) or Fail (refuse the pod)")
	c.Flags().StringVarP(&output, "output", "o", "", "yaml: print the allow-list ConfigMap instead of writing it")
	return c
}

func newExtensionsDisallowCmd(o *Options) *cobra.Command {
	var output string
	var wait time.Duration
	c := &cobra.Command{
		Use:   "disallow NAME",
		Short: "Stop the control plane running an extension's hooks",
		Long: `disallow removes the extension from the allow-list (ConfigMap
conduit-extension-allowlist): the injector and destination stop its hook plugin
within seconds, and inject and discover without it; disallow waits (--wait,
default 2m) until they have. The extension itself stays installed.`,
		Example: `  mesh extensions disallow viz`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if output != "" && output != "yaml" {
				return fmt.Errorf("extensions disallow: unknown output format %q (accepted: yaml)", output)
			}
			k, err := o.Kube()
			if err != nil {
				return err
			}
			al, _, err := pluginhost.ReadAllowList(cmd.Context(), k.Client, o.ControlPlaneNamespace)
			if err != nil {
				return fmt.Errorf("extensions disallow: %w", err)
			}
			if _, ok := al[name]; !ok && output == "" {
				fmt.Fprintf(o.Out, "Extension %s is not in the allow-list: nothing to do.\n", name)
				return nil
			}
			delete(al, name)
			if output == "yaml" {
				return printAllowList(o, al)
			}
			if err := writeAllowList(cmd.Context(), k, o.ControlPlaneNamespace, name, "", true); err != nil {
				return err
			}
			ce, err := clusterExtension(cmd.Context(), k, name)
			if wait <= 0 || err != nil { // not installed: nothing runs its hooks
				fmt.Fprintf(o.Out, "Extension %s removed from the allow-list: the control plane stops its hooks within seconds.\n", name)
				return nil
			}
			ns := o.controlPlaneNS()
			comps := hookComponents(ce)
			if _, err := waitHooks(cmd.Context(), k, ns, name, pluginhost.AllowEntry{}, comps, wait,
				func(s podHookState) bool { return s.state == pluginhost.StateNotAllowed || s.state == "" }, nil); err != nil {
				return fmt.Errorf("extensions disallow: %s is out of the allow-list, but the control plane still runs its hooks: %w (see %s)", name, err, hookLogs(ns, comps))
			}
			fmt.Fprintf(o.Out, "Extension %s removed from the allow-list: its hooks no longer run.\n", name)
			return nil
		},
	}
	c.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for the control plane to stop the extension's hooks (0: do not wait)")
	c.Flags().StringVarP(&output, "output", "o", "", "yaml: print the allow-list ConfigMap instead of writing it")
	return c
}

// clusterExtension finds the installed extension name.
func clusterExtension(ctx context.Context, k *Kube, name string) (pluginhost.ClusterExtension, error) {
	exts, err := pluginhost.ClusterExtensions(ctx, k.Client)
	if err != nil {
		return pluginhost.ClusterExtension{}, fmt.Errorf("extensions: %w", err)
	}
	for _, ce := range exts {
		if ce.Name == name {
			return ce, nil
		}
	}
	return pluginhost.ClusterExtension{}, fmt.Errorf("extensions: %q is not installed in the cluster (no namespace labelled %s=%s): install it first, e.g. `mesh %s install | kubectl apply -f -`",
		name, pluginhost.LabelExtension, name, name)
}

// fetchHookDigest port-forwards to a ready pod behind the hook address
// ("<service>.<namespace>.svc[...]:<port>") and hashes the binary it hands out.
func fetchHookDigest(ctx context.Context, k *Kube, ce pluginhost.ClusterExtension, addr string) (int64, string, string, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, "", "", fmt.Errorf("extensions allow: hook address %q of %s: %w", addr, ce.Name, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return 0, "", "", fmt.Errorf("extensions allow: hook address %q of %s: invalid port", addr, ce.Name)
	}
	parts := strings.Split(host, ".")
	svcName, ns := parts[0], ce.Namespace
	if len(parts) > 1 {
		ns = parts[1]
	}
	svc, err := k.Client.CoreV1().Services(ns).Get(ctx, svcName, metav1.GetOptions{})
	if err != nil {
		return 0, "", "", fmt.Errorf("extensions allow: the hook address %s of %s is not a Service of this cluster: %w (pin a digest with --sha256 instead)", addr, ce.Name, err)
	}
	var target *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if int(svc.Spec.Ports[i].Port) == port {
			target = &svc.Spec.Ports[i]
		}
	}
	if target == nil || len(svc.Spec.Selector) == 0 {
		return 0, "", "", fmt.Errorf("extensions allow: Service %s/%s has no port %d with a pod selector", ns, svcName, port)
	}
	pods, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return 0, "", "", fmt.Errorf("extensions allow: list the pods of Service %s/%s: %w", ns, svcName, err)
	}
	var lastErr error
	for _, p := range servingPods(pods.Items) {
		podPort := target.TargetPort.IntValue()
		if target.TargetPort.Type == intstr.String {
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == target.TargetPort.StrVal {
						podPort = int(cp.ContainerPort)
					}
				}
			}
		}
		if podPort == 0 {
			podPort = port
		}
		size, sum, err := binaryDigestOf(ctx, k, ns, p.Name, podPort)
		if err != nil {
			lastErr = fmt.Errorf("extensions allow: pod %s/%s: %w", ns, p.Name, err)
			continue // another pod of the Service may serve it
		}
		return size, sum, "pod " + ns + "/" + p.Name, nil
	}
	if lastErr != nil {
		return 0, "", "", lastErr
	}
	return 0, "", "", fmt.Errorf("extensions allow: no ready pod behind Service %s/%s (is the extension running? kubectl -n %s get pods)", ns, svcName, ns)
}

// servingPods returns the pods that are ready and not terminating, newest
// first: right after a rollout, a terminating pod may still be marked ready
// while its server has stopped.
func servingPods(pods []corev1.Pod) []corev1.Pod {
	out := slices.DeleteFunc(slices.Clone(pods), func(p corev1.Pod) bool { return !podReady(&p) || p.DeletionTimestamp != nil })
	slices.SortStableFunc(out, func(a, b corev1.Pod) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
	return out
}

// binaryDigestOf port-forwards to ns/pod:port and hashes the hook binary
// its Distribution service hands out.
func binaryDigestOf(ctx context.Context, k *Kube, ns, pod string, port int) (int64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	local, stop, err := portForward(ctx, k, ns, pod, port)
	if err != nil {
		return 0, "", err
	}
	defer stop()
	conn, err := grpc.NewClient("passthrough:///"+local, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	return pluginhost.BinaryDigest(ctx, conn)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// writeAllowList sets (or, with remove, deletes) one entry of the
// allow-list (value in its ConfigMap form) with a merge patch, which leaves
// the other entries to whoever else writes them; it creates the ConfigMap
// when there is none.
func writeAllowList(ctx context.Context, k *Kube, ns, name, value string, remove bool) error {
	entry := any(value)
	if remove {
		entry = nil // a merge patch deletes a key set to null
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]any{name: entry}})
	if err != nil {
		return err
	}
	cms := k.Client.CoreV1().ConfigMaps(ns)
	_, err = cms.Patch(ctx, pluginhost.AllowListName, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) && !remove {
		cm := pluginhost.AllowListConfigMap(ns, pluginhost.AllowList{})
		cm.Data = map[string]string{name: value}
		if _, err = cms.Create(ctx, cm, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			// Created meanwhile: patch that one.
			_, err = cms.Patch(ctx, pluginhost.AllowListName, types.MergePatchType, patch, metav1.PatchOptions{})
		}
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("extensions: the control plane's namespace %s does not exist (is Conduit installed? --conduit-namespace)", ns)
		}
	}
	if err != nil && !(remove && apierrors.IsNotFound(err)) {
		return fmt.Errorf("extensions: write ConfigMap %s/%s: %w", ns, pluginhost.AllowListName, err)
	}
	return nil
}

func printAllowList(o *Options, al pluginhost.AllowList) error {
	b, err := yaml.Marshal(pluginhost.AllowListConfigMap(o.ControlPlaneNamespace, al))
	if err != nil {
		return err
	}
	_, err = o.Out.Write(b)
	return err
}
