package pluginhost

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/conduit-mesh/conduit/core/injector"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	corev1 "k8s.io/api/core/v1"
)

// InjectorContributor adapts the extensions' injector hooks to
// core/injector.PatchContributor. It calls the hooks in extension-name
// order, each with the pod patched by the ones before; a hook that fails,
// times out, or returns operations that do not apply is left out (logged,
// counted, and recorded as an Event) and does not fail the admission,
// unless the allow-list gives its extension failurePolicy=Fail: then
// Contribute returns an error wrapping injector.ErrContributionRequired,
// which refuses the pod (also when that extension's plugin is not running).
type InjectorContributor struct {
	Hooks *Hooks
}

var _ injector.PatchContributor = InjectorContributor{}

// Contribute implements injector.PatchContributor.
func (c InjectorContributor) Contribute(ctx context.Context, req *injector.ContributionRequest) ([]injector.JSONPatchOp, error) {
	failClosed, unavailable := c.Hooks.policies()
	if len(unavailable) > 0 {
		name := slices.Sorted(maps.Keys(unavailable))[0]
		return nil, fmt.Errorf("%w: extension %s (failurePolicy=Fail) is not running its injector hook: %s", injector.ErrContributionRequired, name, unavailable[name])
	}
	targets := c.Hooks.snapshot(false)
	if len(targets) == 0 {
		return nil, nil
	}
	sort.SliceStable(targets, func(i, j int) bool { return targets[i].ext < targets[j].ext })
	current := req.Patched
	if current == nil {
		current = req.Pod
	}
	var all []injector.JSONPatchOp
	for _, t := range targets {
		next, ops, err := c.one(ctx, t, req, current)
		if err != nil && failClosed[t.ext] {
			return nil, fmt.Errorf("%w: extension %s (failurePolicy=Fail): %v", injector.ErrContributionRequired, t.ext, err)
		}
		if err != nil {
			c.Hooks.reportPatchFailure(ctx, t, req.Pod, req.Namespace, req.DryRun, err)
			continue
		}
		current = next
		all = append(all, ops...)
	}
	return all, nil
}

func (c InjectorContributor) one(ctx context.Context, t *target, req *injector.ContributionRequest, pod *corev1.Pod) (*corev1.Pod, []injector.JSONPatchOp, error) {
	b, err := json.Marshal(pod)
	if err != nil {
		return nil, nil, fmt.Errorf("pluginhost: encode pod: %w", err)
	}
	patch, err := c.Hooks.patchOne(ctx, t, &sdk.PodPatchRequest{
		Pod: b, Namespace: req.Namespace, NamespaceLabels: req.NamespaceLabels,
		NamespaceAnnotations: req.NamespaceAnnotations, ProxyPath: req.ProxyPath,
	})
	if err != nil || len(patch) == 0 {
		return pod, nil, err
	}
	var raw []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(patch, &raw); err != nil {
		return nil, nil, fmt.Errorf("pluginhost: patch of extension %q: %w", t.ext, err)
	}
	ops := make([]injector.JSONPatchOp, 0, len(raw))
	for _, r := range raw {
		op := injector.JSONPatchOp{Op: r.Op, Path: r.Path}
		if len(r.Value) > 0 {
			op.Value = r.Value // kept verbatim, even "" or false
		}
		ops = append(ops, op)
	}
	next, err := injector.ApplyPatch(pod, ops)
	if err != nil {
		return nil, nil, fmt.Errorf("pluginhost: patch of extension %q does not apply: %w", t.ext, err)
	}
	return next, ops, nil
}

// EndpointAnnotator adapts the extensions' destination hooks to
// core/destination.EndpointAnnotator: it adds their metadata to
// WeightedAddr.Metadata (never overwriting a key already set). Results are
// cached per pod version and address, so that a recompute calls the hooks
// only for endpoints that changed; a failing hook is skipped and backs off
// (see Hooks), so the recompute path is slowed at most by one timeout per
// backoff period.
type EndpointAnnotator struct {
	Hooks *Hooks
	// MaxCache bounds the cache (default 10000 entries; it is cleared when full).
	MaxCache int

	mu    sync.Mutex
	cache map[string]map[string]string
}

// Annotate implements core/destination.EndpointAnnotator.
func (a *EndpointAnnotator) Annotate(ctx context.Context, addr *destinationv1.WeightedAddr, pod *corev1.Pod) {
	if addr == nil || addr.GetAddr() == nil {
		return
	}
	hostport := net.JoinHostPort(addr.GetAddr().GetIp(), strconv.Itoa(int(addr.GetAddr().GetPort())))
	key := hostport
	if pod != nil {
		key = string(pod.UID) + "/" + pod.ResourceVersion + "/" + hostport
	}
	a.mu.Lock()
	md, ok := a.cache[key]
	a.mu.Unlock()
	if !ok {
		var failed bool
		md, failed = a.Hooks.AnnotateEndpoint(ctx, "", hostport, pod)
		if !failed { // a failure is not cached: the next recompute asks again
			a.mu.Lock()
			max := a.MaxCache
			if max == 0 {
				max = 10000
			}
			if a.cache == nil || len(a.cache) >= max {
				a.cache = map[string]map[string]string{}
			}
			a.cache[key] = md
			a.mu.Unlock()
		}
	}
	if len(md) == 0 {
		return
	}
	if addr.Metadata == nil {
		addr.Metadata = map[string]string{}
	}
	for k, v := range md {
		if _, set := addr.Metadata[k]; !set {
			addr.Metadata[k] = v
		}
	}
}
