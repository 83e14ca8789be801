package destination

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	"sigs.k8s.io/yaml"
)

// The CRD manifest and the Go types must agree: the sample profile the
// API server accepts decodes strictly into the Go types and translates
// without error. (e2e/tests/destination_test.go applies the CRD and the
// good and bad samples to a real API server.)
func TestCRDMatchesGoTypes(t *testing.T) {
	raw, err := os.ReadFile("../../charts/conduit-crds/templates/serviceprofile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw = regexp.MustCompile(`(?m)^\s*\{\{-.*\}\}\s*$\n?`).ReplaceAll(raw, nil)
	var crd struct {
		Metadata struct{ Name string }
		Spec     struct {
			Group    string
			Names    struct{ Kind, Plural, ListKind string }
			Versions []struct {
				Name            string
				Served, Storage bool
			}
		}
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatalf("CRD manifest: %v", err)
	}
	if crd.Metadata.Name != v1alpha2.Resource+"."+v1alpha2.Group || crd.Spec.Group != v1alpha2.Group ||
		crd.Spec.Names.Kind != v1alpha2.Kind || crd.Spec.Names.Plural != v1alpha2.Resource || crd.Spec.Names.ListKind != v1alpha2.ListKind ||
		len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != v1alpha2.Version || !crd.Spec.Versions[0].Storage {
		t.Fatalf("CRD names differ from the Go types: %+v", crd)
	}

	good, err := os.ReadFile(filepath.Join("testdata", "crd", "good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(good)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var sp v1alpha2.ServiceProfile
	if err := dec.Decode(&sp); err != nil {
		t.Fatalf("good.yaml does not decode strictly into the Go types: %v", err)
	}
	routes, errs := TranslateRoutes(sp.Spec.Routes)
	if len(errs) != 0 || len(routes) != 1 {
		t.Fatalf("good.yaml: routes %v, errors %v", routes, errs)
	}
}
