package render

import (
	"errors"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/charts"
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
	for _, o := range []Overrides{
		{Files: [][]byte{[]byte(":\n- not: [yaml")}},
		{Set: []string{"novalue"}},
		{SetString: []string{"a[=b"}},
	} {
		if _, err := o.Merge(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestRenderDeterministicAndOrdered(t *testing.T) {
	vals := map[string]any{"identity": map[string]any{"externalIssuer": true, "trustAnchorsPEM": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}
	a, err := Render(charts.ControlPlane, vals, "conduit")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b, err := Render(charts.ControlPlane, vals, "conduit")
		if err != nil {
			t.Fatal(err)
		}
		if string(YAML(a)) != string(YAML(b)) {
			t.Fatal("two renders differ")
		}
	}
	if a[0].Kind != "Namespace" {
		t.Errorf("first object is a %s, want the Namespace", a[0].Kind)
	}
	if last := a[len(a)-1].Kind; last != "MutatingWebhookConfiguration" {
		t.Errorf("last object is a %s, want the webhook (after the injector it calls)", last)
	}
	for _, m := range a {
		if m.Kind == "Secret" && m.Name == "conduit-identity-issuer" {
			t.Error("the issuer Secret is rendered with an external issuer")
		}
	}
}

func TestRenderFailMessage(t *testing.T) {
	_, err := Render(charts.ControlPlane, nil, "conduit")
	if err == nil || !strings.HasPrefix(strings.TrimPrefix(err.Error(), "render: conduit-control-plane: "), "identity.trustAnchorsPEM is required") {
		t.Fatalf("err = %v, want the chart's own explanation first", err)
	}
	if _, err := Render("nope", nil, "conduit"); err == nil {
		t.Fatal("unknown chart accepted")
	}
	if cleanEngineError(errors.New("plain")).Error() != "plain" {
		t.Error("cleanEngineError changed an error without a fail call")
	}
}

func TestHAAntiAffinity(t *testing.T) {
	base := map[string]any{"highAvailability": true, "identity": map[string]any{"externalIssuer": true, "trustAnchorsPEM": "x"}}
	for mode, want := range map[string]string{"required": "requiredDuringScheduling", "preferred": "preferredDuringScheduling"} {
		vals := map[string]any{"podAntiAffinity": mode}
		for k, v := range base {
			vals[k] = v
		}
		ms, err := Render(charts.ControlPlane, vals, "conduit")
		if err != nil {
			t.Fatal(err)
		}
		out := string(YAML(ms))
		if !strings.Contains(out, want) || (mode == "preferred" && strings.Contains(out, "requiredDuringScheduling")) {
			t.Errorf("podAntiAffinity=%s: output lacks %s or still requires", mode, want)
		}
		if strings.Count(out, "kind: PodDisruptionBudget") != 3 || strings.Count(out, "replicas: 3") != 3 {
			t.Errorf("podAntiAffinity=%s: want 3 PDBs and 3 replicas per controller", mode)
		}
	}
}
