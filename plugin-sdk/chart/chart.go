package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
)

// Options of a rendering.
type Options struct {
	// ReleaseName is .Release.Name (default: the chart's name).
	ReleaseName string
	// Namespace is .Release.Namespace (default "default").
	Namespace string
	// Values override the chart's values.yaml.
	Values map[string]any
	// Uninstall orders the manifests for deletion (Helm's uninstall order
	// of kinds); Render and RenderChart only.
	Uninstall bool
}

// Overrides are a user's values, applied in Helm's order on top of the
// chart's defaults: Files, then Flags (a command's named flags, or values
// given as a map), then Set, then SetString.
type Overrides struct {
	Files     [][]byte       // contents of --values files, in order
	Flags     map[string]any // values set by named flags
	Set       []string       // --set a.b=c
	SetString []string       // --set-string a.b=c
}

// Merge returns the user's values (without the chart's defaults), for
// Options.Values. It never aliases the maps in Flags.
func (o Overrides) Merge() (map[string]any, error) {
	vals := map[string]any{}
	for i, y := range o.Files {
		v := map[string]any{}
		if err := yaml.Unmarshal(y, &v); err != nil {
			return nil, fmt.Errorf("chart: values file %d is not valid YAML: %w", i+1, err)
		}
		vals = chartutil.MergeTables(v, vals)
	}
	if o.Flags != nil {
		vals = chartutil.MergeTables(deepCopy(o.Flags), vals)
	}
	for _, s := range o.Set {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("chart: --set %q: %w (expected key=value, e.g. a.b=c)", s, err)
		}
	}
	for _, s := range o.SetString {
		if err := strvals.ParseIntoString(s, vals); err != nil {
			return nil, fmt.Errorf("chart: --set-string %q: %w (expected key=value)", s, err)
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

// Load reads the chart rooted at dir in fsys (an embed.FS, os.DirFS, ...).
func Load(fsys fs.FS, dir string) (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, path.Clean(dir)), "/")
		if dir == "." {
			rel = p
		}
		files = append(files, &loader.BufferedFile{Name: rel, Data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("chart: read %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("chart: no file in %s (embed the chart with //go:embed all:%s)", dir, dir)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("chart: load %s: %w", dir, err)
	}
	return ch, nil
}

// Values returns the chart's defaults merged with user, as the templates
// see them as .Values.
func Values(ch *chart.Chart, user map[string]any) (map[string]any, error) {
	merged, err := chartutil.CoalesceValues(ch, deepCopy(user))
	if err != nil {
		return nil, fmt.Errorf("chart: %s: merge values: %w", ch.Name(), err)
	}
	return merged, nil
}

// Render renders the chart rooted at dir in fsys with opts.Values over its
// defaults and returns multi-document YAML in Helm's install order (or
// uninstall order), each document headed by "# Source: <template>".
// NOTES.txt, partials and empty templates are left out; hooks are rendered
// as plain manifests.
func Render(fsys fs.FS, dir string, opts Options) ([]byte, error) {
	ch, err := Load(fsys, dir)
	if err != nil {
		return nil, err
	}
	return RenderChart(ch, opts)
}

// RenderChart is Render for a chart already loaded.
func RenderChart(ch *chart.Chart, opts Options) ([]byte, error) {
	ms, err := Manifests(ch, opts)
	if err != nil {
		return nil, err
	}
	if opts.Uninstall {
		rank := ranks(releaseutil.UninstallOrder)
		slices.SortStableFunc(ms, func(a, b Manifest) int { return rank(a.Kind) - rank(b.Kind) })
	}
	return YAML(ms), nil
}

// Manifest is one rendered Kubernetes object.
type Manifest struct {
	Source     string // template path, e.g. hello/templates/deploy.yaml
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	Content    string // YAML, without the leading "---"
}

// Manifests renders ch with opts.Values over its defaults (checked against
// its values.schema.json) into objects in Helm's install order of kinds
// (namespaces and CRDs first, webhooks last), then by namespace and name,
// so that the output never depends on map iteration. A template's `fail`
// message comes without the template call stack.
func Manifests(ch *chart.Chart, opts Options) ([]Manifest, error) {
	if opts.ReleaseName == "" {
		opts.ReleaseName = ch.Name()
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	top, err := chartutil.ToRenderValues(ch, deepCopy(opts.Values), chartutil.ReleaseOptions{
		Name: opts.ReleaseName, Namespace: opts.Namespace, Revision: 1, IsInstall: !opts.Uninstall,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("chart: %s: values: %w", ch.Name(), err)
	}
	rendered, err := engine.Render(ch, top)
	if err != nil {
		return nil, fmt.Errorf("chart: %s: %w", ch.Name(), cleanEngineError(err))
	}
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	var ms []Manifest
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") || strings.HasPrefix(path.Base(n), "_") {
			continue
		}
		for _, doc := range releaseutil.SplitManifests(rendered[n]) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct{ Name, Namespace string }
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return nil, fmt.Errorf("chart: %s renders invalid YAML: %w", n, err)
			}
			if head.Kind == "" {
				return nil, fmt.Errorf("chart: %s renders a document without kind", n)
			}
			ms = append(ms, Manifest{Source: n, APIVersion: head.APIVersion, Kind: head.Kind,
				Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, Content: strings.TrimSpace(doc)})
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("chart: the chart renders no manifest")
	}
	rank := ranks(releaseutil.InstallOrder)
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
	return ms, nil
}

// ranks returns the place of a kind in order, unknown kinds last.
func ranks(order releaseutil.KindSortOrder) func(kind string) int {
	return func(kind string) int {
		if i := slices.Index(order, kind); i >= 0 {
			return i
		}
		return len(order)
	}
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

// YAML joins manifests into one multi-document stream for kubectl apply,
// each document headed by "# Source: <template>".
func YAML(ms []Manifest) []byte {
	var b bytes.Buffer
	for _, m := range ms {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Source, m.Content)
	}
	return b.Bytes()
}

// UninstallYAML lists the objects of ms in reverse order, as minimal
// documents (kind, name and namespace) for `kubectl delete -f -`.
func UninstallYAML(ms []Manifest) []byte {
	var b bytes.Buffer
	for _, m := range slices.Backward(ms) {
		fmt.Fprintf(&b, "---\napiVersion: %s\nkind: %s\nmetadata:\n  name: %s\n", m.APIVersion, m.Kind, m.Name)
		if m.Namespace != "" {
			fmt.Fprintf(&b, "  namespace: %s\n", m.Namespace)
		}
	}
	return b.Bytes()
}
