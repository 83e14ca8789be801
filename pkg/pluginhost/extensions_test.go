package pluginhost

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func extNamespace(name, ext, version string, ann map[string]string) *corev1.Namespace {
	labels := map[string]string{LabelExtension: ext}
	if version != "" {
		labels[LabelExtensionVersion] = version
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: ann}}
}

func testHost(t *testing.T) (*Host, *fake.Clientset) {
	dir := plugins(t)
	cs := fake.NewClientset(
		extNamespace("conduit-hello", "hello", "0.2.0", map[string]string{AnnotationInjectorHook: "hello.conduit-hello.svc:8089"}),
		extNamespace("conduit-viz", "viz", "", nil),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
	)
	// Only hello and crasher are on disk; mesh-future does not start.
	return &Host{Finder: Finder{Dirs: []string{dir}}}, cs
}

func TestClusterExtensions(t *testing.T) {
	_, cs := testHost(t)
	got, err := ClusterExtensions(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	want := []ClusterExtension{
		{Name: "hello", Namespace: "conduit-hello", Version: "0.2.0", InjectorHook: "hello.conduit-hello.svc:8089"},
		{Name: "viz", Namespace: "conduit-viz"},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestList(t *testing.T) {
	h, cs := testHost(t)
	rows, err := h.List(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Extension{}
	var names []string
	for _, r := range rows {
		byName[r.Name] = r
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "crasher,future,hello,viz" {
		t.Fatalf("rows %v", names)
	}
	hello := byName["hello"]
	if hello.Namespace != "conduit-hello" || hello.ClusterVersion != "0.2.0" || hello.PluginVersion != "0.1.0" ||
		hello.Plugin != filepath.Join(plugins(t), "mesh-hello") || len(hello.Capabilities) != 4 {
		t.Errorf("hello %+v", hello)
	}
	// hello serves an injector hook that the allow-list does not name.
	if hello.Hooks != "not allowed" || len(hello.Warnings) != 2 || hello.Warnings[0] != NotAllowedWarning("hello") ||
		!strings.Contains(hello.Warnings[1], "the cluster runs version 0.2.0 but the plugin is version 0.1.0") {
		t.Errorf("hello hooks %q, warnings %q", hello.Hooks, hello.Warnings)
	}
	if _, err := cs.CoreV1().ConfigMaps("conduit").Create(context.Background(), AllowListConfigMap("conduit", AllowList{"hello": {SHA256: strings.Repeat("0", 64)}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rows, err = h.List(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == "hello" && (r.Hooks != "allowed" || len(r.Warnings) != 1) {
			t.Errorf("allowed hello: hooks %q, warnings %q", r.Hooks, r.Warnings)
		}
	}
	viz := byName["viz"]
	if viz.Plugin != "" || len(viz.Warnings) != 1 || viz.Warnings[0] != MissingPluginWarning("viz", "conduit-viz") {
		t.Errorf("viz %+v", viz)
	}
	if !strings.Contains(viz.Warnings[0], "`make build` (it writes bin/mesh-viz)") {
		t.Errorf("viz warning does not say how to get the plugin: %q", viz.Warnings[0])
	}
	if fut := byName["future"]; len(fut.Warnings) != 1 || !strings.Contains(fut.Warnings[0], "does not speak this mesh's plugin protocol") {
		t.Errorf("future %+v", fut)
	}
	if c := byName["crasher"]; c.Namespace != "" || c.PluginVersion != "0.0.1" || len(c.Warnings) != 0 {
		t.Errorf("crasher %+v", c)
	}
}

func TestExtensionChecks(t *testing.T) {
	h, cs := testHost(t)
	cats, err := h.ExtensionChecks(context.Background(), cs, sdk.KubeFlags{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(cats, "", "  ")
	type c = sdk.CheckResult
	want := []sdk.CheckCategory{
		{Name: "hello-extension", Checks: []c{
			{Description: "control-plane hooks are allowed", Status: sdk.StatusWarn,
				Error: "not in the allow-list (ConfigMap conduit-extension-allowlist): the injector and destination do not run its hooks",
				Hint:  "run `mesh extensions allow hello` (it pins the SHA-256 of the extension's hook binary)"},
			{Description: "mesh-hello plugin is on this machine", Status: sdk.StatusOK},
			{Description: "mesh-hello plugin matches the installed version", Status: sdk.StatusWarn, Error: "the cluster runs version 0.2.0 but the plugin is version 0.1.0: use the same version for both",
				Hint: "install the plugin of the version in the cluster, or upgrade the extension with `mesh hello install | kubectl apply -f -`"},
		}},
		{Name: "hello", Checks: []c{
			{Description: "hello can greet", Status: sdk.StatusOK},
			{Description: "hello has a friend", Status: sdk.StatusWarn, Error: "hello has no friend yet", Hint: "hello is an example: write your own extension (docs/extensions.md)"},
		}},
		{Name: "viz-extension", Checks: []c{
			{Description: "mesh-viz plugin is on this machine", Status: sdk.StatusWarn, Error: "no mesh-viz in $MESH_PLUGINS_DIR, ~/.conduit/plugins or $PATH", Hint: MissingPluginWarning("viz", "conduit-viz")},
		}},
	}
	wb, _ := json.MarshalIndent(want, "", "  ")
	if string(b) != string(wb) {
		t.Errorf("got\n%s\nwant\n%s", b, wb)
	}
}
