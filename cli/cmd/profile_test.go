package cmd

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	"github.com/conduit-mesh/conduit/core/destination"
	"sigs.k8s.io/yaml"
)

func TestProfileTemplate(t *testing.T) {
	out, _, err := runWith(t, nil, "profile", "--template", "web", "-n", "emojivoto")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "profile_template.golden", out)
	assertServableProfile(t, out, "web.emojivoto.svc.cluster.local", 2)
}

func TestProfileOpenAPI(t *testing.T) {
	out, _, err := runWith(t, nil, "profile", "--open-api", filepath.Join("testdata", "books.swagger.json"), "books", "-n", "bookapp")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "profile_openapi.golden", out)
	sp := assertServableProfile(t, out, "books.bookapp.svc.cluster.local", 5)
	// The generated regexes match the paths they come from, and only those.
	re := regexp.MustCompile("^" + sp.Spec.Routes[0].Condition.All[1].PathRegex + "$")
	for path, want := range map[string]bool{"/v1/authors/42.json": true, "/v1/authors/42xjson": false, "/v1/authors/4/2.json": false} {
		if re.MatchString(path) != want {
			t.Errorf("route %q regex %q on %s: match %v", sp.Spec.Routes[0].Name, re, path, !want)
		}
	}
}

// assertServableProfile decodes a generated profile strictly and checks
// that the destination service serves every route.
func assertServableProfile(t *testing.T, out, name string, routes int) *v1alpha2.ServiceProfile {
	t.Helper()
	var sp v1alpha2.ServiceProfile
	if err := yaml.UnmarshalStrict([]byte(out), &sp); err != nil {
		t.Fatalf("generated profile does not decode strictly: %v", err)
	}
	if sp.Name != name || sp.Kind != v1alpha2.Kind || sp.APIVersion != "conduit.dev/v1alpha2" {
		t.Errorf("profile is %s %s %s", sp.APIVersion, sp.Kind, sp.Name)
	}
	got, errs := destination.TranslateRoutes(sp.Spec.Routes)
	if len(errs) > 0 || len(got) != routes {
		t.Fatalf("served routes %d (want %d), errors %v", len(got), routes, errs)
	}
	return &sp
}

func TestProfileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no mode", []string{"profile", "web"}, "exactly one of --template or --open-api"},
		{"both modes", []string{"profile", "web", "--template", "--open-api", "x.json"}, "exactly one of"},
		{"bad service name", []string{"profile", "--template", "Web_1"}, `service "Web_1"`},
		{"missing file", []string{"profile", "--open-api", filepath.Join(dir, "nope.json"), "web"}, "read OpenAPI spec"},
		{"not openapi", []string{"profile", "--open-api", write("a.json", `{"paths": {"/a": {"get": {}}}}`), "web"}, "not an OpenAPI document"},
		{"no paths", []string{"profile", "--open-api", write("b.json", `{"openapi": "3.0.0", "paths": {}}`), "web"}, "no paths"},
		{"bad timeout", []string{"profile", "--open-api", write("c.json", `{"openapi": "3.0.0", "paths": {"/a": {"get": {"x-conduit-timeout": "-1s"}}}}`), "web"}, `paths["/a"].get.x-conduit-timeout`},
		{"garbage", []string{"profile", "--open-api", write("d.json", "{{{"), "web"}, "neither JSON nor YAML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runWith(t, nil, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
