package chart

import (
	"strings"
	"testing"
	"testing/fstest"
)

func testFS() fstest.MapFS {
	return fstest.MapFS{
		"c/Chart.yaml":              {Data: []byte("apiVersion: v2\nname: demo\nversion: 1.0.0\nappVersion: 1.0.0\n")},
		"c/values.yaml":             {Data: []byte("replicas: 1\nenabled: true\n")},
		"c/values.schema.json":      {Data: []byte(`{"type":"object","required":["replicas"],"properties":{"replicas":{"type":"integer","minimum":0}}}`)},
		"c/templates/NOTES.txt":     {Data: []byte("thanks\n")},
		"c/templates/_helpers.tpl":  {Data: []byte(`{{- define "demo.name" -}}demo{{- end -}}`)},
		"c/templates/deploy.yaml":   {Data: []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ include \"demo.name\" . }}\n  namespace: {{ .Release.Namespace }}\nspec:\n  replicas: {{ .Values.replicas }}\n")},
		"c/templates/ns.yaml":       {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ .Release.Namespace }}\n")},
		"c/templates/optional.yaml": {Data: []byte("{{- if not .Values.enabled }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: off\n{{- end }}\n")},
	}
}

func kinds(out []byte) string {
	var ks []string
	for _, l := range strings.Split(string(out), "\n") {
		if k, ok := strings.CutPrefix(l, "kind: "); ok {
			ks = append(ks, k)
		}
	}
	return strings.Join(ks, ",")
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      Options
		kinds     string
		contains  []string
		wantErrIn string
	}{
		// The schema requires replicas, which the defaults give: it checks
		// the merged values, not the user's alone.
		{name: "defaults", opts: Options{Namespace: "conduit-demo"}, kinds: "Namespace,Deployment",
			contains: []string{"# Source: demo/templates/deploy.yaml", "replicas: 1", "namespace: conduit-demo"}},
		{name: "values", opts: Options{Values: map[string]any{"replicas": 3, "enabled": false}}, kinds: "Namespace,ConfigMap,Deployment",
			contains: []string{"replicas: 3", "namespace: default"}},
		{name: "uninstall order", opts: Options{Uninstall: true}, kinds: "Deployment,Namespace"},
		{name: "schema", opts: Options{Values: map[string]any{"replicas": -1}}, wantErrIn: "chart: demo: values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Render(testFS(), "c", tc.opts)
			if tc.wantErrIn != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrIn) {
					t.Fatalf("err %v, want %q", err, tc.wantErrIn)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := kinds(out); got != tc.kinds {
				t.Errorf("kinds %s, want %s\n%s", got, tc.kinds, out)
			}
			for _, c := range tc.contains {
				if !strings.Contains(string(out), c) {
					t.Errorf("no %q in\n%s", c, out)
				}
			}
			if strings.Contains(string(out), "thanks") {
				t.Error("NOTES.txt rendered")
			}
		})
	}
	if _, err := Render(testFS(), "missing", Options{}); err == nil {
		t.Error("a missing chart directory gives no error")
	}
}
