package install

import (
	"fmt"
	"net/url"
	"regexp"

	"github.com/conduit-mesh/conduit/extensions/viz/charts"
	sdkchart "github.com/conduit-mesh/conduit/plugin-sdk/chart"
	"helm.sh/helm/v3/pkg/chart"
)

// ReleaseName is the Helm release name the chart is rendered with.
const ReleaseName = "conduit-viz"

// Options are the user's overrides of the chart's values.
type Options struct {
	// ValuesYAML are values files' contents, applied in order.
	ValuesYAML [][]byte
	// Values are values as a map (the plugin SDK's InstallRequest), applied
	// after ValuesYAML.
	Values map[string]any
	// Set are helm-style key=value overrides (a.b=c), applied last.
	Set []string
}

// load reads the embedded chart.
func load() (*chart.Chart, error) {
	ch, err := sdkchart.Load(charts.Viz(), ".")
	if err != nil {
		return nil, fmt.Errorf("install: embedded chart: %w", err)
	}
	return ch, nil
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func validate(v map[string]any) error {
	str := func(k string) string { s, _ := v[k].(string); return s }
	for _, k := range []string{"namespace", "conduitNamespace"} {
		if s := str(k); len(s) > 63 || !dnsLabel.MatchString(s) {
			return fmt.Errorf("install: %s %q is not a valid namespace name (a DNS label: lowercase letters, digits and '-')", k, s)
		}
	}
	if s := str("proxyInjection"); s != "enabled" && s != "disabled" {
		return fmt.Errorf("install: proxyInjection %q: accepted values are enabled and disabled", s)
	}
	if s := str("prometheusUrl"); s != "" {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("install: prometheusUrl %q must be an absolute http(s) URL, e.g. http://prometheus.monitoring.svc:9090", s)
		}
	}
	img, _ := v["image"].(map[string]any)
	if r, _ := img["registry"].(string); r == "" {
		return fmt.Errorf("install: image.registry must not be empty")
	}
	if t, _ := img["tag"].(string); t == "" {
		return fmt.Errorf("install: image.tag must not be empty")
	}
	return nil
}

// Manifest is one rendered Kubernetes object.
type Manifest = sdkchart.Manifest

// Render renders the chart with the overrides; objects come in Helm's install
// order of kinds (namespace, service accounts, config, RBAC, services, then
// workloads), then by name.
func Render(o Options) ([]Manifest, error) {
	ch, err := load()
	if err != nil {
		return nil, err
	}
	// The namespace's conduit.dev/extension-version is the plugin's.
	ch.Metadata.AppVersion = charts.Version()
	user, err := sdkchart.Overrides{Files: o.ValuesYAML, Flags: o.Values, Set: o.Set}.Merge()
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	merged, err := sdkchart.Values(ch, user)
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	if err := validate(merged); err != nil {
		return nil, err
	}
	ns, _ := merged["namespace"].(string)
	ms, err := sdkchart.Manifests(ch, sdkchart.Options{ReleaseName: ReleaseName, Namespace: ns, Values: user})
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	return ms, nil
}

// YAML joins manifests into one multi-document stream for kubectl apply.
func YAML(ms []Manifest) []byte { return sdkchart.YAML(ms) }

// UninstallYAML lists the objects of ms in reverse install order, as minimal
// documents for `kubectl delete -f -`.
func UninstallYAML(ms []Manifest) []byte { return sdkchart.UninstallYAML(ms) }
