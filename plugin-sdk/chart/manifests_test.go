package chart

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

func TestMergePrecedence(t *testing.T) {
	o := Overrides{
		Files:     [][]byte{[]byte("a: file1\nb: file1\nc: file1\nd: file1\n"), []byte("b: file2\n")},
		Flags:     map[string]any{"c": "flag", "nested": map[string]any{"x": "flag"}},
		Set:       []string{"d=set", "nested.y=2"},
		SetString: []string{"e=007"},
	}
	got, err := o.Merge()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": "file1", "b": "file2", "c": "flag", "d": "set", "e": "007"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	n := got["nested"].(map[string]any)
	if n["x"] != "flag" || n["y"] != int64(2) {
		t.Errorf("nested = %#v", n)
	}
	// Merge must not alias the caller's flag map.
	n["x"] = "changed"
	if o.Flags["nested"].(map[string]any)["x"] != "flag" {
		t.Error("Merge modified the caller's Flags")
	}
}

func TestMergeErrors(t *testing.T) {
	for _, tc := range []struct {
		o    Overrides
		want string
	}{
		{Overrides{Files: [][]byte{[]byte("a: 1\n"), []byte(":\n- not: [yaml")}}, "chart: values file 2 is not valid YAML"},
		{Overrides{Set: []string{"novalue"}}, `--set "novalue"`},
		{Overrides{SetString: []string{"a[=b"}}, `--set-string "a[=b"`},
	} {
		if _, err := tc.o.Merge(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.o, err, tc.want)
		}
	}
}

// testChart is a chart with objects of several kinds in files whose order
// is not the install order, a partial, NOTES.txt and a fail guard.
var orderChart = fstest.MapFS{
	"Chart.yaml":             {Data: []byte("apiVersion: v2\nname: demo\nversion: 0.1.0\n")},
	"values.yaml":            {Data: []byte("name: demo\nrequired: yes\n")},
	"templates/_helpers.tpl": {Data: []byte(`{{- define "demo.labels" }}app: {{ .Values.name }}{{ end }}`)},
	"templates/NOTES.txt":    {Data: []byte("installed {{ .Release.Name }}\n")},
	"templates/a-deploy.yaml": {Data: []byte(`{{- if not .Values.required }}{{ fail "required must be set: it says why" }}{{ end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Values.name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{ include "demo.labels" . }}
`)},
	"templates/b-ns.yaml": {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ .Release.Namespace }}\n")},
	"templates/c-svc.yaml": {Data: []byte(`apiVersion: v1
kind: Service
metadata:
  name: zeta
  namespace: {{ .Release.Namespace }}
---
apiVersion: v1
kind: Service
metadata:
  name: alpha
  namespace: {{ .Release.Namespace }}
`)},
}

func TestManifests(t *testing.T) {
	ch, err := Load(orderChart, ".")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := Manifests(ch, Options{ReleaseName: "rel", Namespace: "ns1", Values: map[string]any{"name": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Kind+" "+m.Namespace+"/"+m.Name+" "+m.Source)
	}
	want := []string{
		"Namespace /ns1 demo/templates/b-ns.yaml",
		"Service ns1/alpha demo/templates/c-svc.yaml",
		"Service ns1/zeta demo/templates/c-svc.yaml",
		"Deployment ns1/web demo/templates/a-deploy.yaml",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("objects:\n%s\nwant (install order, then name; no partial or NOTES.txt):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(ms[3].Content, "app: web") || strings.HasPrefix(ms[3].Content, "---") {
		t.Errorf("deployment content:\n%s", ms[3].Content)
	}
	for i := 0; i < 5; i++ {
		again, err := Manifests(ch, Options{ReleaseName: "rel", Namespace: "ns1", Values: map[string]any{"name": "web"}})
		if err != nil {
			t.Fatal(err)
		}
		if string(YAML(again)) != string(YAML(ms)) {
			t.Fatal("two renders differ")
		}
	}
	un := string(UninstallYAML(ms))
	if !strings.HasPrefix(un, "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: ns1\n") ||
		!strings.HasSuffix(un, "kind: Namespace\nmetadata:\n  name: ns1\n") {
		t.Errorf("UninstallYAML is not the objects in reverse order:\n%s", un)
	}
}

func TestRenderFailMessage(t *testing.T) {
	ch, err := Load(orderChart, ".")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Manifests(ch, Options{ReleaseName: "rel", Namespace: "ns1", Values: map[string]any{"required": false}})
	if err == nil || err.Error() != "chart: demo: required must be set: it says why" {
		t.Fatalf("err = %v, want the chart's own explanation without the template stack", err)
	}
	if cleanEngineError(errors.New("plain")).Error() != "plain" {
		t.Error("cleanEngineError changed an error without a fail call")
	}
	if _, err := Load(fstest.MapFS{"values.yaml": {Data: []byte("a: 1\n")}}, "."); err == nil || !strings.Contains(err.Error(), "Chart.yaml file is missing") {
		t.Errorf("a chart without Chart.yaml: err = %v", err)
	}
}
