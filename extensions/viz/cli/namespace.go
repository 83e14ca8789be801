package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ExtensionLabel marks the extension's namespace: `mesh viz install` labels
// it conduit.dev/extension=viz, and `mesh extensions list` finds extensions
// by it (pkg/pluginhost's LabelExtension, not imported: the plugin would link
// the whole plugin host for one constant).
const ExtensionLabel = "conduit.dev/extension"

// vizSelector selects the namespaces of viz.
const vizSelector = ExtensionLabel + "=viz"

// VizNamespaces lists the namespaces labelled conduit.dev/extension=viz,
// sorted: where viz is installed, whatever `--set namespace=` it was given.
func VizNamespaces(ctx context.Context, kc kubernetes.Interface) ([]string, error) {
	list, err := kc.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: vizSelector})
	if err != nil {
		return nil, fmt.Errorf("viz: listing the namespaces labelled %s: %w", vizSelector, err)
	}
	names := make([]string, 0, len(list.Items))
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	sort.Strings(names)
	return names, nil
}

// ResolveVizNamespace is the namespace of viz for the query commands:
// --viz-namespace when given (flag), else the one namespace labelled
// conduit.dev/extension=viz, else DefaultVizNamespace (viz is not installed,
// or the user may not list namespaces: the call to viz then says so). More
// than one labelled namespace is an error that names them.
func ResolveVizNamespace(ctx context.Context, kc kubernetes.Interface, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	names, err := VizNamespaces(ctx, kc)
	switch {
	case apierrors.IsForbidden(err):
		return DefaultVizNamespace, nil
	case err != nil:
		return "", err
	case len(names) == 0:
		return DefaultVizNamespace, nil
	case len(names) > 1:
		return "", fmt.Errorf("viz: %s: choose one with --viz-namespace", moreThanOne(names))
	}
	return names[0], nil
}

func moreThanOne(names []string) string {
	return fmt.Sprintf("%d namespaces are labelled %s (%s): viz is installed more than once", len(names), vizSelector, strings.Join(names, ", "))
}
