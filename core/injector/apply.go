package injector

import (
	"context"
	"encoding/json"
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
)

// ApplyPatch returns a copy of pod with ops applied: what the API server
// does with the webhook's answer. `mesh inject --manual` uses it to render
// the full sidecar spec offline.
func ApplyPatch(pod *corev1.Pod, ops []JSONPatchOp) (*corev1.Pod, error) {
	doc, err := json.Marshal(pod)
	if err != nil {
		return nil, fmt.Errorf("injector: encode pod: %w", err)
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("injector: encode patch: %w", err)
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		return nil, fmt.Errorf("injector: decode patch: %w", err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		return nil, fmt.Errorf("injector: apply patch: %w", err)
	}
	var patched corev1.Pod
	if err := json.Unmarshal(out, &patched); err != nil {
		return nil, fmt.Errorf("injector: decode patched pod: %w", err)
	}
	return &patched, nil
}

// Render is Inject followed by ApplyPatch: the injected pod, or nil when
// the pod is not injected (res.Reason says why). `mesh inject --manual`
// renders a workload's pod template through it.
func (inj *Injector) Render(ctx context.Context, req Request) (*corev1.Pod, *Result, error) {
	res, err := inj.Inject(ctx, req)
	if err != nil || !res.Injected {
		return nil, res, err
	}
	pod, err := ApplyPatch(req.Pod, res.Patch)
	if err != nil {
		return nil, res, err
	}
	return pod, res, nil
}
