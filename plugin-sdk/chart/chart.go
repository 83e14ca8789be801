package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
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
	// Uninstall orders the manifests for deletion (the reverse of install).
	Uninstall bool
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
	if opts.ReleaseName == "" {
		opts.ReleaseName = ch.Name()
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	vals := opts.Values
	if vals == nil {
		vals = map[string]any{}
	}
	if err := chartutil.ValidateAgainstSchema(ch, vals); err != nil {
		return nil, fmt.Errorf("chart: values: %w", err)
	}
	top, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: opts.ReleaseName, Namespace: opts.Namespace, Revision: 1, IsInstall: !opts.Uninstall, IsUpgrade: false,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("chart: values: %w", err)
	}
	rendered, err := engine.Render(ch, top)
	if err != nil {
		return nil, fmt.Errorf("chart: render %s: %w", ch.Name(), err)
	}
	var manifests []releaseutil.Manifest
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		base := path.Base(n)
		if strings.HasSuffix(n, "NOTES.txt") || strings.HasPrefix(base, "_") {
			continue
		}
		for _, doc := range releaseutil.SplitManifests(rendered[n]) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var head releaseutil.SimpleHead
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return nil, fmt.Errorf("chart: %s renders invalid YAML: %w", n, err)
			}
			if head.Kind == "" {
				return nil, fmt.Errorf("chart: %s renders a document without kind", n)
			}
			manifests = append(manifests, releaseutil.Manifest{Name: n, Content: doc, Head: &head})
		}
	}
	if len(manifests) == 0 {
		return nil, errors.New("chart: the chart renders no manifest")
	}
	order := releaseutil.InstallOrder
	if opts.Uninstall {
		order = releaseutil.UninstallOrder
	}
	manifests = sortByKind(manifests, order)
	var b bytes.Buffer
	for _, m := range manifests {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Name, strings.TrimSpace(m.Content))
	}
	return b.Bytes(), nil
}

// sortByKind orders manifests by kind as order says (unknown kinds last),
// keeping the template order otherwise.
func sortByKind(ms []releaseutil.Manifest, order releaseutil.KindSortOrder) []releaseutil.Manifest {
	rank := map[string]int{}
	for i, k := range order {
		rank[k] = i
	}
	r := func(k string) int {
		if v, ok := rank[k]; ok {
			return v
		}
		return len(order)
	}
	sort.SliceStable(ms, func(i, j int) bool { return r(ms[i].Head.Kind) < r(ms[j].Head.Kind) })
	return ms
}
