package pluginhost

import (
	"context"
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Labels and annotations of an extension's namespace.
const (
	// LabelExtension marks the namespace of an installed extension: its value
	// is the extension's name.
	LabelExtension = "conduit.dev/extension"
	// LabelExtensionVersion, optional, is the installed extension's version.
	LabelExtensionVersion = "conduit.dev/extension-version"
	// AnnotationInjectorHook is the gRPC address ("<svc>.<ns>.svc:<port>")
	// where the extension's controller serves its InjectorHook.
	AnnotationInjectorHook = "conduit.dev/injector-hook"
	// AnnotationDestinationHook is the gRPC address of its DestinationHook.
	AnnotationDestinationHook = "conduit.dev/destination-hook"
)

// ClusterExtension is an extension installed in the cluster.
type ClusterExtension struct {
	Name      string
	Namespace string
	// Version is the conduit.dev/extension-version label ("" if absent).
	Version string
	// InjectorHook and DestinationHook are the hook addresses ("" if none).
	InjectorHook    string
	DestinationHook string
}

// ClusterExtensions lists the namespaces labelled conduit.dev/extension,
// sorted by extension name then namespace.
func ClusterExtensions(ctx context.Context, cs kubernetes.Interface) ([]ClusterExtension, error) {
	list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: LabelExtension})
	if err != nil {
		return nil, fmt.Errorf("pluginhost: list extension namespaces (label %s): %w", LabelExtension, err)
	}
	out := make([]ClusterExtension, 0, len(list.Items))
	for _, ns := range list.Items {
		name := ns.Labels[LabelExtension]
		if name == "" {
			continue
		}
		out = append(out, ClusterExtension{
			Name:            name,
			Namespace:       ns.Name,
			Version:         ns.Labels[LabelExtensionVersion],
			InjectorHook:    ns.Annotations[AnnotationInjectorHook],
			DestinationHook: ns.Annotations[AnnotationDestinationHook],
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Namespace < out[j].Namespace
	})
	return out, nil
}
