package install

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the golden file (run go test -update and review the diff):\n%s", name, got)
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"install_default.golden", Options{}},
		{"install_external_prometheus.golden", Options{Set: []string{"prometheusUrl=http://prom.monitoring.svc:9090", "image.tag=v1.2.3"}}},
		{"install_values_file.golden", Options{ValuesYAML: [][]byte{[]byte("namespace: viz-test\nproxyInjection: disabled\ndashboard: {allowedHosts: [viz.example.com, viz.internal]}\n")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := Render(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			out := YAML(ms)
			golden(t, tc.name, out)
			// Every document is valid YAML with a kind and a name.
			for _, doc := range strings.Split(string(out), "\n---\n") {
				var obj map[string]any
				if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
					t.Fatalf("invalid YAML: %v\n%s", err, doc)
				}
			}
		})
	}
}

func TestRenderInvariants(t *testing.T) {
	ms, err := Render(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].Kind != "Namespace" || ms[0].Name != "conduit-viz" {
		t.Fatalf("first object = %s/%s, want the namespace first", ms[0].Kind, ms[0].Name)
	}
	if !strings.Contains(ms[0].Content, "conduit.dev/extension: viz") {
		t.Errorf("namespace lacks the extension label:\n%s", ms[0].Content)
	}
	kinds := map[string]int{}
	for _, m := range ms {
		kinds[m.Kind]++
		if m.Kind == "Deployment" {
			for _, want := range []string{"runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false"} {
				if !strings.Contains(m.Content, want) {
					t.Errorf("deployment %s lacks %q", m.Name, want)
				}
			}
		}
		if m.Kind == "ClusterRole" && strings.Contains(m.Content, "'*'") {
			t.Errorf("cluster role %s uses a wildcard", m.Name)
		}
	}
	if kinds["Deployment"] < 3 {
		t.Errorf("deployments = %d, want prometheus, metrics-api and web", kinds["Deployment"])
	}

	ext, err := Render(Options{Set: []string{"prometheusUrl=http://prom:9090"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ext {
		if m.Name == "prometheus" {
			t.Errorf("external Prometheus still renders %s/%s", m.Kind, m.Name)
		}
		if m.Name == "metrics-api" && m.Kind == "Deployment" && !strings.Contains(m.Content, "--prometheus-url=http://prom:9090") {
			t.Errorf("metrics-api does not use the external Prometheus:\n%s", m.Content)
		}
	}
}

func TestRenderRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		set, want string
	}{
		{"namespace=Bad_NS", "not a valid namespace name"},
		{"proxyInjection=maybe", "accepted values are enabled and disabled"},
		{"prometheusUrl=prom:9090", "absolute http(s) URL"},
		{"image.tag=", "image.tag must not be empty"},
	} {
		_, err := Render(Options{Set: []string{tc.set}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: err = %v, want %q", tc.set, err, tc.want)
		}
	}
	if _, err := Render(Options{ValuesYAML: [][]byte{[]byte("a: [")}}); err == nil {
		t.Error("a broken values file was accepted")
	}
}

func TestUninstallReverseOrder(t *testing.T) {
	ms, err := Render(Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := string(UninstallYAML(ms))
	if !strings.HasSuffix(out, "kind: Namespace\nmetadata:\n  name: conduit-viz\n") {
		t.Errorf("namespace is not deleted last:\n%s", out)
	}
	golden(t, "uninstall.golden", []byte(out))
}
