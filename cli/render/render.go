package render

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/conduit-mesh/conduit/charts"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
)

// Overrides are the user's values, applied in helm's order on top of the
// chart's defaults: Files, then Flags (the named flags of mesh install), then
// Set, then SetString.
type Overrides struct {
	Files     [][]byte       // contents of --values files, in order
	Flags     map[string]any // values set by named flags
	Set       []string       // --set a.b=c
	SetString []string       // --set-string a.b=c
}

// Merge returns the user's values (without the chart's defaults).
func (o Overrides) Merge() (map[string]any, error) {
	vals := map[string]any{}
	for i, y := range o.Files {
		v := map[string]any{}
		if err := yaml.Unmarshal(y, &v); err != nil {
			return nil, fmt.Errorf("render: values file %d is not valid YAML: %w", i+1, err)
		}
		vals = chartutil.MergeTables(v, vals)
	}
	if o.Flags != nil {
		vals = chartutil.MergeTables(deepCopy(o.Flags), vals)
	}
	for _, s := range o.Set {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("render: --set %q: %w (expected key=value, e.g. proxy.logLevel=debug)", s, err)
		}
	}
	for _, s := range o.SetString {
		if err := strvals.ParseIntoString(s, vals); err != nil {
			return nil, fmt.Errorf("render: --set-string %q: %w (expected key=value)", s, err)
		}
	}
	return vals, nil
}

func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = deepCopy(sub)
		}
		out[k] = v
	}
	return out
}

// Load reads the embedded chart name (charts.CRDs or charts.ControlPlane).
func Load(name string) (*chart.Chart, error) {
	root, err := charts.FS(name)
	if err != nil {
		return nil, fmt.Errorf("render: unknown chart %q: %w", name, err)
	}
	var files []*loader.BufferedFile
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
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
		return nil, fmt.Errorf("render: read embedded chart %s: %w", name, err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("render: load embedded chart %s: %w", name, err)
	}
	return ch, nil
}

// Values returns the chart's defaults merged with user, as the templates see them.
func Values(ch *chart.Chart, user map[string]any) (map[string]any, error) {
	merged, err := chartutil.CoalesceValues(ch, deepCopy(user))
	if err != nil {
		return nil, fmt.Errorf("render: merge values: %w", err)
	}
	return merged, nil
}

// Manifest is one rendered Kubernetes object.
type Manifest struct {
	Source     string // template path, e.g. conduit-control-plane/templates/identity.yaml
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	Content    string // YAML, without the leading "---"
}

// Render renders chart name with the user's values. releaseNamespace is the
// namespace helm would install into (the control plane's).
func Render(name string, user map[string]any, releaseNamespace string) ([]Manifest, error) {
	ch, err := Load(name)
	if err != nil {
		return nil, err
	}
	rv, err := chartutil.ToRenderValues(ch, deepCopy(user), chartutil.ReleaseOptions{
		Name: name, Namespace: releaseNamespace, IsInstall: true, Revision: 1,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("render: %s values: %w", name, err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, fmt.Errorf("render: %s: %w", name, cleanEngineError(err))
	}
	for k := range files {
		if strings.HasSuffix(k, "NOTES.txt") || strings.HasPrefix(path.Base(k), "_") {
			delete(files, k)
		}
	}
	_, sorted, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("render: %s: split manifests: %w", name, err)
	}
	out := make([]Manifest, 0, len(sorted))
	for _, m := range sorted {
		var meta struct {
			Metadata struct{ Name, Namespace string }
		}
		if err := yaml.Unmarshal([]byte(m.Content), &meta); err != nil {
			return nil, fmt.Errorf("render: %s: %s is not valid YAML: %w", name, m.Name, err)
		}
		out = append(out, Manifest{
			Source: m.Name, APIVersion: m.Head.Version, Kind: m.Head.Kind,
			Name: meta.Metadata.Name, Namespace: meta.Metadata.Namespace, Content: strings.TrimSpace(m.Content),
		})
	}
	sortManifests(out)
	return out, nil
}

// sortManifests orders objects by helm's install order of kinds, then by
// namespace and name, so that the output never depends on map iteration.
func sortManifests(ms []Manifest) {
	rank := func(kind string) int {
		if i := slices.Index(releaseutil.InstallOrder, kind); i >= 0 {
			return i
		}
		return len(releaseutil.InstallOrder)
	}
	slices.SortStableFunc(ms, func(a, b Manifest) int {
		if d := rank(a.Kind) - rank(b.Kind); d != 0 {
			return d
		}
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// cleanEngineError strips the template call stack from a `fail` message so
// that the user sees the chart's explanation.
func cleanEngineError(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "error calling fail: "); i >= 0 {
		return errors.New(msg[i+len("error calling fail: "):])
	}
	if i := strings.Index(msg, "execution error at ("); i >= 0 {
		if j := strings.Index(msg[i:], "): "); j >= 0 {
			return errors.New(msg[i+j+len("): "):])
		}
	}
	return err
}

// YAML joins manifests into one multi-document stream for kubectl apply.
func YAML(ms []Manifest) []byte {
	var b bytes.Buffer
	for _, m := range ms {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Source, m.Content)
	}
	return b.Bytes()
}
