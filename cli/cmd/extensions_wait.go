package cmd

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// hookWaitPoll is how often allow and disallow read the hook states.
var hookWaitPoll = time.Second

// podHookState is what one control-plane pod reports of an extension's hook
// plugin; pod is empty when its component has no ready pod.
type podHookState struct {
	component, pod string
	// sha and policy: the allow-list entry the state is about (policy is
	// "" from a control plane that does not report it)
	state, sha, policy string
	err                error
}

// about reports whether the state is about want: its digest, under its
// failure policy when the pod reports one.
func (s podHookState) about(want pluginhost.AllowEntry) bool {
	return s.sha == want.SHA256 && (s.policy == "" || s.policy == string(want.FailurePolicy))
}

// runs reports whether the pod runs the plugin of want's digest, under
// want's failure policy.
func (s podHookState) runs(want pluginhost.AllowEntry) bool {
	return s.pod != "" && s.err == nil && s.state == pluginhost.StateRunning && s.about(want)
}

// describe says what the pod reports, for errors; want is the entry
// allowed (zero when the extension is not allowed).
func (s podHookState) describe(want pluginhost.AllowEntry) string {
	if s.pod == "" {
		return fmt.Sprintf("no ready %s pod", s.component)
	}
	if s.err != nil {
		return fmt.Sprintf("%s: %v", s.pod, s.err)
	}
	if s.state == pluginhost.StateRunning && want.SHA256 != "" && !s.about(want) {
		if s.sha != want.SHA256 {
			return fmt.Sprintf("%s runs sha256:%.12s…, not the allowed sha256:%.12s… yet", s.pod, s.sha, want.SHA256)
		}
		return fmt.Sprintf("%s runs it under failure policy %s, not %s yet", s.pod, s.policy, want.FailurePolicy)
	}
	pod := s.pod
	if s.sha != "" {
		pod += " (for sha256:" + s.sha[:min(12, len(s.sha))] + "…)"
	}
	switch s.state {
	case "":
		return pod + ": no state reported yet (the control plane lists the extensions when they change, and every 30 s)"
	case pluginhost.StateFailed:
		return pod + ": failed (its hook binary could not be fetched or started yet: are the extension's pods ready, with proxies this control plane certified? mesh check --proxy)"
	case pluginhost.StateRefused:
		return pod + ": refused (the binary it fetched does not have the allowed SHA-256)"
	}
	return pod + ": " + s.state
}

// hookComponents are the control-plane components that call ce's hooks.
func hookComponents(ce pluginhost.ClusterExtension) []string {
	var cs []string
	if ce.InjectorHook != "" {
		cs = append(cs, "injector")
	}
	if ce.DestinationHook != "" {
		cs = append(cs, "destination")
	}
	return cs
}

// readHookStates reads the state of ext's hook plugin from the admin
// /metrics of every ready pod of the components, in namespace ns.
func readHookStates(ctx context.Context, k *Kube, ns, ext string, components []string) ([]podHookState, error) {
	var out []podHookState
	for _, comp := range components {
		pods, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: componentLabel + "=" + comp})
		if err != nil {
			return nil, fmt.Errorf("list the %s pods: %w", comp, err)
		}
		ready := servingPods(pods.Items)
		if len(ready) == 0 {
			out = append(out, podHookState{component: comp})
			continue
		}
		slices.SortFunc(ready, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
		for _, p := range ready {
			s := podHookState{component: comp, pod: p.Name}
			body, err := fetchMetrics(ctx, k, ns, p.Name, controllerAdminPorts[comp])
			if err == nil {
				s.state, s.sha, s.policy, err = hookState(body, ext)
			}
			s.err = err
			out = append(out, s)
		}
	}
	return out, nil
}

// hookState returns the state pluginhost.PluginMetric gives ext in a Prometheus
// text exposition, and the digest and failure policy it is about ("" when
// none).
func hookState(metrics []byte, ext string) (state, sha, policy string, err error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(metrics))
	if err != nil {
		return "", "", "", fmt.Errorf("unreadable metrics: %w", err)
	}
	for _, m := range families[pluginhost.PluginMetric].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["extension"] == ext && m.GetGauge().GetValue() == 1 {
			return labels["state"], labels["sha256"], labels["failure_policy"], nil
		}
	}
	return "", "", "", nil
}

// waitHooks polls the hook states of ext in the components until done
// accepts every ready pod's, fatal (if not nil) rejects one (its error is
// returned at once), or timeout passes (the error lists what each pod
// reported last, described against want, the allowed entry or zero).
func waitHooks(ctx context.Context, k *Kube, ns, ext string, want pluginhost.AllowEntry, components []string, timeout time.Duration,
	done func(podHookState) bool, fatal func(podHookState) error) ([]podHookState, error) {
	deadline := time.Now().Add(timeout)
	for {
		states, err := readHookStates(ctx, k, ns, ext, components)
		if err != nil {
			return nil, err
		}
		all := true
		for _, s := range states {
			if fatal != nil && s.err == nil && s.pod != "" {
				if err := fatal(s); err != nil {
					return states, err
				}
			}
			all = all && s.pod != "" && s.err == nil && done(s)
		}
		if all {
			return states, nil
		}
		if !time.Now().Add(hookWaitPoll).Before(deadline) {
			var b strings.Builder
			for i, s := range states {
				if i > 0 {
					b.WriteString("; ")
				}
				b.WriteString(s.describe(want))
			}
			return states, fmt.Errorf("not done within %v: %s", timeout, b.String())
		}
		select {
		case <-ctx.Done():
			return states, ctx.Err()
		case <-time.After(hookWaitPoll):
		}
	}
}

// podNames lists the pods of states.
func podNames(states []podHookState) string {
	names := make([]string, 0, len(states))
	for _, s := range states {
		names = append(names, s.pod)
	}
	return strings.Join(names, ", ")
}

// hookLogs says where the components log about extensions' hooks.
func hookLogs(ns string, components []string) string {
	cmds := make([]string, 0, len(components))
	for _, c := range components {
		cmds = append(cmds, fmt.Sprintf("'kubectl -n %s logs deploy/conduit-%s -c %s'", ns, c, c))
	}
	return strings.Join(cmds, ", ")
}
