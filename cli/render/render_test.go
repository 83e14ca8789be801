package render

import (
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/charts"
)

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
	if err == nil || !strings.HasPrefix(strings.TrimPrefix(err.Error(), "chart: conduit-control-plane: "), "identity.trustAnchorsPEM is required") {
		t.Fatalf("err = %v, want the chart's own explanation first", err)
	}
	if _, err := Render("nope", nil, "conduit"); err == nil {
		t.Fatal("unknown chart accepted")
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
