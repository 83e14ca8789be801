package injector

import (
	"context"
	"encoding/json"
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
)

// AlreadyInjected reports whether pod carries the injector's work: the
// annotation conduit.dev/inject-status: injected, or a container named
// conduit-proxy or conduit-init. The webhook never injects such a pod again;
// `mesh inject` reports it as already injected.
func AlreadyInjected(pod *corev1.Pod) bool { return alreadyInjected(pod) }

// RenderJSON is Render on a pod given as JSON (a Pod, or a pod template:
// an object with metadata and spec): it returns the injected pod as JSON, or
// nil when the pod is not injected (res.Reason says why). The patch is
// applied to the JSON document itself, so fields that corev1.Pod does not
// know and fields left unset keep their exact form: `mesh inject --manual`
// renders a workload's manifest through it. req.Pod is ignored (decoded
// from podJSON).
func (inj *Injector) RenderJSON(ctx context.Context, req Request, podJSON []byte) ([]byte, *Result, error) {
	var pod corev1.Pod
	if err := json.Unmarshal(podJSON, &pod); err != nil {
		return nil, nil, fmt.Errorf("injector: decode pod: %w", err)
	}
	req.Pod = &pod
	res, err := inj.Inject(ctx, req)
	if err != nil || !res.Injected {
		return nil, res, err
	}
	raw, err := json.Marshal(res.Patch)
	if err != nil {
		return nil, res, fmt.Errorf("injector: encode patch: %w", err)
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		return nil, res, fmt.Errorf("injector: decode patch: %w", err)
	}
	out, err := p.Apply(podJSON)
	if err != nil {
		return nil, res, fmt.Errorf("injector: apply patch: %w", err)
	}
	return out, res, nil
}
