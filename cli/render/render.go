package render

import (
	"fmt"

	"github.com/conduit-mesh/conduit/charts"
	sdkchart "github.com/conduit-mesh/conduit/plugin-sdk/chart"
	"helm.sh/helm/v3/pkg/chart"
)

// Overrides are the user's values, applied in helm's order on top of the
// chart's defaults: Files, then Flags (the named flags of mesh install), then
// Set, then SetString.
type Overrides = sdkchart.Overrides

// Manifest is one rendered Kubernetes object.
type Manifest = sdkchart.Manifest

// Load reads the embedded chart name (charts.CRDs or charts.ControlPlane).
func Load(name string) (*chart.Chart, error) {
	root, err := charts.FS(name)
	if err != nil {
		return nil, fmt.Errorf("render: unknown chart %q: %w", name, err)
	}
	return sdkchart.Load(root, ".")
}

// Values returns the chart's defaults merged with user, as the templates see them.
func Values(ch *chart.Chart, user map[string]any) (map[string]any, error) {
	return sdkchart.Values(ch, user)
}

// Render renders chart name with the user's values. releaseNamespace is the
// namespace helm would install into (the control plane's).
func Render(name string, user map[string]any, releaseNamespace string) ([]Manifest, error) {
	ch, err := Load(name)
	if err != nil {
		return nil, err
	}
	return sdkchart.Manifests(ch, sdkchart.Options{ReleaseName: name, Namespace: releaseNamespace, Values: user})
}

// YAML joins manifests into one multi-document stream for kubectl apply.
func YAML(ms []Manifest) []byte { return sdkchart.YAML(ms) }
