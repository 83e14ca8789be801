package destination

import (
	"context"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	corev1 "k8s.io/api/core/v1"
)

// EndpointAnnotator lets an extension add metadata (WeightedAddr.Metadata)
// or metric labels to the endpoints of meshed and unmeshed pods. It is called
// on the recompute path, so it must be fast and must not block.
//
// The plugin SDK wires extensions' destination hooks to this interface; the
// destination service itself ships none (DefaultAnnotators is empty).
type EndpointAnnotator interface {
	Annotate(ctx context.Context, addr *destinationv1.WeightedAddr, pod *corev1.Pod)
}

// DefaultAnnotators is the list used when Config.Annotators is nil.
var DefaultAnnotators []EndpointAnnotator
