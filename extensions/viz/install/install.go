package install

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/conduit-mesh/conduit/extensions/viz/charts"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
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

func userValues(o Options) (map[string]any, error) {
	vals := map[string]any{}
	for i, y := range o.ValuesYAML {
		v := map[string]any{}
		if err := yaml.Unmarshal(y, &v); err != nil {
			return nil, fmt.Errorf("install: values file %d: %w", i+1, err)
		}
		vals = chartutil.MergeTables(v, vals)
	}
	if o.Values != nil {
		vals = chartutil.MergeTables(copyValues(o.Values), vals)
	}
	for _, s := range o.Set {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("install: --set %q: %w", s, err)
		}
	}
	return vals, nil
}

// copyValues deep-copies m through YAML so that merging never aliases the caller's maps.
func copyValues(m map[string]any) map[string]any {
	b, err := yaml.Marshal(m)
	if err != nil {
		return m
	}
	out := map[string]any{}
	if yaml.Unmarshal(b, &out) != nil {
		return m
	}
	return out
}

func load() (*chart.Chart, error) {
	var files []*loader.BufferedFile
	root := charts.Viz()
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: p, Data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("install: reading embedded chart: %w", err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("install: loading embedded chart: %w", err)
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
type Manifest struct {
	Source     string // template path inside the chart
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	Content    string // YAML
}

// Render renders the chart with the overrides; objects come in install order
// (namespace, RBAC, config, workloads, services).
func Render(o Options) ([]Manifest, error) {
	ch, err := load()
	if err != nil {
		return nil, err
	}
	user, err := userValues(o)
	if err != nil {
		return nil, err
	}
	merged, err := chartutil.CoalesceValues(ch, user)
	if err != nil {
		return nil, fmt.Errorf("install: merging values: %w", err)
	}
	if err := validate(merged); err != nil {
		return nil, err
	}
	ns, _ := merged["namespace"].(string)
	rv, err := chartutil.ToRenderValues(ch, user, chartutil.ReleaseOptions{
		Name: ReleaseName, Namespace: ns, IsInstall: true, Revision: 1,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("install: values: %w", err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, fmt.Errorf("install: rendering chart: %w", err)
	}
	for k := range files {
		if strings.HasSuffix(k, "NOTES.txt") || path.Base(k)[0] == '_' {
			delete(files, k)
		}
	}
	_, sorted, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("install: sorting manifests: %w", err)
	}
	out := make([]Manifest, 0, len(sorted))
	for _, m := range sorted {
		var meta struct {
			Metadata struct{ Name, Namespace string }
		}
		if err := yaml.Unmarshal([]byte(m.Content), &meta); err != nil {
			return nil, fmt.Errorf("install: %s: %w", m.Name, err)
		}
		out = append(out, Manifest{
			Source: strings.TrimPrefix(m.Name, ch.Name()+"/"), APIVersion: m.Head.Version, Kind: m.Head.Kind,
			Name: meta.Metadata.Name, Namespace: meta.Metadata.Namespace, Content: strings.TrimSpace(m.Content),
		})
	}
	return out, nil
}

// YAML joins manifests into one multi-document stream for kubectl apply.
func YAML(ms []Manifest) []byte {
	var b bytes.Buffer
	for _, m := range ms {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Source, m.Content)
	}
	return b.Bytes()
}

// UninstallYAML lists the objects of ms in reverse install order, as minimal
// documents for `kubectl delete -f -`.
func UninstallYAML(ms []Manifest) []byte {
	var b bytes.Buffer
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	for _, m := range rev {
		fmt.Fprintf(&b, "---\napiVersion: %s\nkind: %s\nmetadata:\n  name: %s\n", m.APIVersion, m.Kind, m.Name)
		if m.Namespace != "" {
			fmt.Fprintf(&b, "  namespace: %s\n", m.Namespace)
		}
	}
	return b.Bytes()
}
