package cmd

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"sigs.k8s.io/yaml"

	"github.com/conduit-mesh/conduit/core/injector"
)

const injectValues = `version: v0.1.0
proxy:
  image: ghcr.io/conduit-mesh/proxy
proxyInit:
  image: ghcr.io/conduit-mesh/proxy-init
`

// meshedCluster is a fake cluster with Conduit installed in "conduit",
// running Kubernetes 1.minor.
func meshedCluster(t *testing.T, minor string) *Kube {
	t.Helper()
	anchors, err := os.ReadFile("testdata/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	k, cs := fakeKube(false,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: injector.ConfigMapName, Namespace: "conduit"}, Data: map[string]string{injector.ConfigMapKey: injectValues}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: injector.TrustRootsName, Namespace: "conduit"}, Data: map[string]string{injector.TrustRootsKey: string(anchors)}},
	)
	cs.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{Major: "1", Minor: minor}
	return k
}

// transcript is what golden files hold: standard error as comments, then
// standard output (so the file stays valid YAML).
func transcript(stdout, stderr string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		b.WriteString("# " + l + "\n")
	}
	return b.String() + stdout
}

// runStdin runs the CLI with stdin.
func runStdin(t *testing.T, k *Kube, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb strings.Builder
	o := &Options{Out: &out, Err: &errb, In: strings.NewReader(stdin)}
	if k != nil {
		o.NewKube = func() (*Kube, error) { return k, nil }
	}
	root := NewRootCmd(o)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

// parseStream decodes a YAML stream into its objects.
func parseStream(t *testing.T, s string) []map[string]any {
	t.Helper()
	docs, err := splitDocuments([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	for _, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal(d.data, &m); err != nil {
			t.Fatalf("output is not YAML: %v\n%s", err, d.data)
		}
		if m != nil {
			objs = append(objs, m)
		}
	}
	return objs
}

var injectInputs = []string{"deployment", "statefulset", "daemonset", "replicaset", "job", "cronjob", "pod", "list", "multidoc", "passthrough", "skipped", "annotated"}

// Golden outputs of inject, inject --manual and uninject (of the manual
// output) for every input; uninject gives back the input's objects.
func TestInjectGolden(t *testing.T) {
	for _, name := range injectInputs {
		t.Run(name, func(t *testing.T) {
			in := filepath.Join("testdata", "inject", name+".yaml")
			input, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}

			out, stderr, err := runWith(t, nil, "inject", in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("inject", name+".golden"), transcript(out, stderr))
			back, _, err := runStdin(t, nil, out, "uninject", "-")
			if err != nil {
				t.Fatal(err)
			}
			// The annotated input loses its annotation: no roundtrip.
			roundtrip := name != "annotated"
			if got, want := parseStream(t, back), parseStream(t, string(input)); roundtrip && !reflect.DeepEqual(got, want) {
				t.Errorf("uninject(inject(x)) != x:\n%s", back)
			}

			manual, stderr, err := runWith(t, meshedCluster(t, "30"), "inject", "--manual", in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("inject", name+".manual.golden"), transcript(manual, stderr))

			back, stderr, err = runStdin(t, nil, manual, "uninject", "-")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("inject", name+".uninject.golden"), transcript(back, stderr))
			if got, want := parseStream(t, back), parseStream(t, string(input)); roundtrip && !reflect.DeepEqual(got, want) {
				t.Errorf("uninject(inject --manual(x)) != x:\n%s", back)
			}
		})
	}
}

func TestInjectManualDetails(t *testing.T) {
	podTemplate := func(t *testing.T, out string) corev1.PodTemplateSpec {
		t.Helper()
		var d struct {
			Spec struct{ Template corev1.PodTemplateSpec } `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(out), &d); err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template
	}
	in := filepath.Join("testdata", "inject", "deployment.yaml")

	t.Run("native sidecar on 1.29+", func(t *testing.T) {
		out, _, err := runWith(t, meshedCluster(t, "29+"), "inject", "--manual", in)
		if err != nil {
			t.Fatal(err)
		}
		pt := podTemplate(t, out)
		if len(pt.Spec.InitContainers) != 2 || pt.Spec.InitContainers[1].Name != injector.ProxyContainerName || len(pt.Spec.Containers) != 1 {
			t.Errorf("init containers %v, containers %v", pt.Spec.InitContainers, pt.Spec.Containers)
		}
		// The identity uses the workload's namespace and ServiceAccount.
		if !strings.Contains(out, "web.emojivoto.serviceaccount.identity.conduit.cluster.local") {
			t.Errorf("identity name missing:\n%s", out)
		}
	})
	t.Run("regular container before 1.29", func(t *testing.T) {
		out, _, err := runWith(t, meshedCluster(t, "28"), "inject", "--manual", in)
		if err != nil {
			t.Fatal(err)
		}
		pt := podTemplate(t, out)
		if len(pt.Spec.Containers) != 2 || pt.Spec.Containers[0].Name != injector.ProxyContainerName || len(pt.Spec.InitContainers) != 1 {
			t.Errorf("init containers %v, containers %v", pt.Spec.InitContainers, pt.Spec.Containers)
		}
	})
	t.Run("--sidecar-mode regular wins over the version", func(t *testing.T) {
		out, _, err := runWith(t, meshedCluster(t, "30"), "inject", "--manual", "--sidecar-mode", "regular", in)
		if err != nil {
			t.Fatal(err)
		}
		if pt := podTemplate(t, out); pt.Spec.Containers[0].Name != injector.ProxyContainerName {
			t.Errorf("containers %v", pt.Spec.Containers)
		}
	})
	t.Run("--values without a cluster", func(t *testing.T) {
		anchors, _ := os.ReadFile("testdata/ca.crt")
		values := filepath.Join(t.TempDir(), "values.yaml")
		b, _ := yaml.Marshal(map[string]any{"version": "v9.9.9", "identity": map[string]string{"trustAnchorsPEM": string(anchors)}})
		if err := os.WriteFile(values, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, _, err := runWith(t, nil, "inject", "--manual", "--values", values, in)
		if err != nil {
			t.Fatal(err)
		}
		pt := podTemplate(t, out)
		if len(pt.Spec.InitContainers) != 2 || pt.Spec.InitContainers[1].Image != "localhost/conduit/proxy:v9.9.9" {
			t.Errorf("init containers %v", pt.Spec.InitContainers)
		}
	})
	t.Run("config annotation refused", func(t *testing.T) {
		doc := strings.Replace(string(mustRead(t, in)), "    metadata:\n      labels:\n", "    metadata:\n      annotations:\n        config.conduit.dev/proxy-image: \"bad image:tag\"\n      labels:\n", 1)
		_, _, err := runStdin(t, meshedCluster(t, "30"), doc, "inject", "--manual", "-")
		if err == nil || !strings.Contains(err.Error(), "document 1") || !strings.Contains(err.Error(), `deployment "web"`) || !strings.Contains(err.Error(), "proxy-image") {
			t.Errorf("err = %v", err)
		}
	})
	// mesh inject --manual goes through the injector's own code: the IPv6
	// mode reaches proxy-init and the proxy alike, from the workload's
	// annotation or the configuration's default; auto adds neither.
	ipv6Of := func(t *testing.T, pt corev1.PodTemplateSpec) (initArg, env string, found bool) {
		t.Helper()
		for _, c := range pt.Spec.InitContainers {
			switch c.Name {
			case injector.ProxyInitContainerName:
				found = true
				for _, a := range c.Args {
					if v, ok := strings.CutPrefix(a, "--ipv6="); ok {
						initArg = v
					}
				}
			case injector.ProxyContainerName:
				for _, e := range c.Env {
					if e.Name == "CONDUIT_PROXY_IPV6" {
						env = e.Value
					}
				}
			}
		}
		return initArg, env, found
	}
	withIPv6 := func(v string) string {
		return strings.Replace(string(mustRead(t, in)), "    metadata:\n      labels:\n", "    metadata:\n      annotations:\n        config.conduit.dev/ipv6: "+v+"\n      labels:\n", 1)
	}
	anchors := string(mustRead(t, "testdata/ca.crt"))
	for _, tc := range []struct {
		name, annotation, configMode string
		want                         string // "" for neither
	}{
		{name: "ipv6 default", want: ""},
		{name: "ipv6 annotation off", annotation: `"off"`, want: "off"},
		{name: "ipv6 annotation on", annotation: `"on"`, want: "on"},
		{name: "ipv6 from --values", configMode: "on", want: "on"},
		{name: "ipv6 annotation auto over --values off", annotation: "auto", configMode: "off", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := string(mustRead(t, in))
			if tc.annotation != "" {
				doc = withIPv6(tc.annotation)
			}
			args := []string{"inject", "--manual", "-"}
			k := meshedCluster(t, "30")
			if tc.configMode != "" {
				values := filepath.Join(t.TempDir(), "values.yaml")
				b, _ := yaml.Marshal(map[string]any{"proxy": map[string]string{"ipv6": tc.configMode}, "identity": map[string]string{"trustAnchorsPEM": anchors}})
				if err := os.WriteFile(values, b, 0o600); err != nil {
					t.Fatal(err)
				}
				args, k = []string{"inject", "--manual", "--values", values, "-"}, nil
			}
			out, _, err := runStdin(t, k, doc, args...)
			if err != nil {
				t.Fatal(err)
			}
			arg, env, found := ipv6Of(t, podTemplate(t, out))
			if !found || arg != tc.want || env != tc.want {
				t.Errorf("proxy-init --ipv6=%q, proxy CONDUIT_PROXY_IPV6=%q, want both %q (empty: not set)", arg, env, tc.want)
			}
		})
	}
	t.Run("ipv6 annotation refused", func(t *testing.T) {
		_, _, err := runStdin(t, meshedCluster(t, "30"), withIPv6("dual"), "inject", "--manual", "-")
		if err == nil || !strings.Contains(err.Error(), `deployment "web"`) || !strings.Contains(err.Error(), `config.conduit.dev/ipv6="dual"`) || !strings.Contains(err.Error(), "accepted: auto") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("already injected", func(t *testing.T) {
		k := meshedCluster(t, "30")
		once, _, err := runWith(t, k, "inject", "--manual", in)
		if err != nil {
			t.Fatal(err)
		}
		twice, stderr, err := runStdin(t, k, once, "inject", "--manual", "-")
		if err != nil {
			t.Fatal(err)
		}
		if twice != once || stderr != "deployment \"web\" already injected\n" {
			t.Errorf("second injection changed the output or said %q", stderr)
		}
		// The default mode does not annotate a manually injected workload.
		annotated, stderr, err := runStdin(t, nil, once, "inject", "-")
		if err != nil || annotated != once || !strings.Contains(stderr, "already injected") {
			t.Errorf("default mode on injected: %v %q", err, stderr)
		}
	})
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInjectSources(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"a.yaml":     string(mustRead(t, "testdata/inject/pod.yaml")),
		"b.json":     `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}`,
		"notes.txt":  "not a manifest",
		"c.yml":      string(mustRead(t, "testdata/inject/job.yaml")),
		"sub/d.yaml": "ignored: true",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, err := runStdin(t, nil, string(mustRead(t, "testdata/inject/daemonset.yaml")),
		"inject", dir, "-", "testdata/inject/cronjob.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := "pod \"debug\" injected\nservice \"s\" skipped: not a workload\njob \"report\" injected\ndaemonset \"agent\" injected\ncronjob \"nightly\" injected\n"
	if stderr != want {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}
	objs := parseStream(t, out)
	if len(objs) != 5 {
		t.Fatalf("%d objects:\n%s", len(objs), out)
	}
	for i, kind := range []string{"Pod", "Service", "Job", "DaemonSet", "CronJob"} {
		if objs[i]["kind"] != kind {
			t.Errorf("object %d is a %v, want %s", i+1, objs[i]["kind"], kind)
		}
	}
}

func TestInjectErrors(t *testing.T) {
	unreachable := func() (*Kube, error) { return nil, errors.New("kubernetes: load kubeconfig: no configuration") }
	cases := []struct {
		name    string
		stdin   string
		args    []string
		newKube func() (*Kube, error)
		k       *Kube
		want    []string
	}{
		{"malformed second document", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nkind: Deployment\nmetadata:\n  name: [unclosed\n",
			[]string{"inject", "-"}, nil, nil, []string{"standard input: document 2: invalid YAML"}},
		{"malformed in uninject", "kind: Pod\n  bad: indent\n", []string{"uninject", "-"}, nil, nil, []string{"document 1: invalid YAML"}},
		{"scalar document", "just a string\n", []string{"inject", "-"}, nil, nil, []string{"document 1: not a Kubernetes object"}},
		{"bad pod template", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  template:\n    spec:\n      containers: nope\n",
			[]string{"inject", "-"}, nil, nil, []string{`document 1: deployment "w": invalid pod template`}},
		{"missing template", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {schedule: x}\n",
			[]string{"inject", "-"}, nil, nil, []string{`cronjob "c" has no pod template (spec.jobTemplate)`}},
		{"list item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n  spec: {containers: 3}\n",
			[]string{"inject", "-"}, nil, nil, []string{`document 1: item 1: pod "p": invalid pod template`}},
		{"missing file", "", []string{"inject", "nope.yaml"}, nil, nil, []string{"nope.yaml", "pass manifest files, directories or -"}},
		{"no argument", "", []string{"inject"}, nil, nil, []string{"requires at least 1 arg"}},
		{"manual without cluster", "", []string{"inject", "--manual", "testdata/inject/pod.yaml"}, unreachable, nil,
			[]string{"inject --manual", "no configuration", "inject without --manual", "--values FILE"}},
		{"manual, not installed", "", []string{"inject", "--manual", "testdata/inject/pod.yaml"}, nil, func() *Kube { k, _ := fakeKube(false); return k }(),
			[]string{"ConfigMap conduit/conduit-config not found", "mesh check", "inject without --manual"}},
		{"values without manual", "", []string{"inject", "--values", "x.yaml", "testdata/inject/pod.yaml"}, nil, nil, []string{"only apply with --manual"}},
		{"invalid inject annotation", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  template:\n    metadata:\n      annotations: {conduit.dev/inject: \"false\"}\n    spec:\n      containers: [{name: a, image: a}]\n",
			[]string{"inject", "-"}, nil, nil, []string{`deployment "w"`, `conduit.dev/inject="false" is invalid (accepted: enabled, disabled)`}},
		{"bad sidecar mode", "", []string{"inject", "--manual", "--sidecar-mode", "sometimes", "testdata/inject/pod.yaml"}, nil, nil, []string{"accepted: auto, native, regular"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb strings.Builder
			o := &Options{Out: &out, Err: &errb, In: strings.NewReader(tc.stdin), ControlPlaneNamespace: "conduit", NewKube: tc.newKube}
			if tc.k != nil {
				o.NewKube = func() (*Kube, error) { return tc.k, nil }
			}
			root := NewRootCmd(o)
			root.SetArgs(tc.args)
			err := root.Execute()
			if err == nil {
				t.Fatalf("no error; stdout:\n%s", out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if out.Len() != 0 {
				t.Errorf("stdout not empty on error:\n%s", out.String())
			}
		})
	}
}

// A document inject leaves alone is printed byte for byte: its leading
// indentation and the trailing spaces and blank lines of a block scalar at
// its end are part of the objects' values (or of the YAML's structure).
func TestInjectPassthroughExact(t *testing.T) {
	cases := []struct{ name, doc string }{
		{"trailing spaces in a block scalar", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  motd: |\n    hello\n\n    world   \n"},
		{"kept trailing newlines", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  banner: |+\n    hi\n\n\n"},
		{"indented document", "  apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: c\n"},
	}
	for _, tc := range cases {
		for _, verb := range []string{"inject", "uninject"} {
			t.Run(verb+"/"+tc.name, func(t *testing.T) {
				// Alone, and followed by another document.
				for _, in := range []string{tc.doc, tc.doc + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n"} {
					out, _, err := runStdin(t, nil, in, verb, "-")
					if err != nil {
						t.Fatal(err)
					}
					if out != in {
						t.Errorf("output differs from the input:\n%q\nwant\n%q", out, in)
					}
				}
			})
		}
	}
}

// A malformed document is named by its number in the stream, counting empty
// documents wherever they are, and the YAML error by its line in the file,
// not in the document.
func TestInjectErrorPosition(t *testing.T) {
	const svc = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
	const bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  labels:\n    a: b\n     c: d\n" // the error is on its line 7
	cases := []struct {
		name, in string
		want     string
	}{
		{"second document", svc + "---\n" + bad, "document 2: invalid YAML at line 11 of standard input: "},
		{"after an empty document", svc + "---\n---\n" + bad, "document 3: invalid YAML at line 12 of standard input: "},
		{"after two empty documents", svc + "---\n---\n---\n" + bad, "document 4: invalid YAML at line 13 of standard input: "},
		{"after a leading separator", "---\n" + svc + "---\n" + bad, "document 2: invalid YAML at line 12 of standard input: "},
		{"after a leading empty document", "---\n---\n" + bad, "document 2: invalid YAML at line 9 of standard input: "},
		{"after a comment-only document", "# header\n---\n" + bad, "document 2: invalid YAML at line 9 of standard input: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runStdin(t, nil, tc.in, "inject", "-")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "mapping values are not allowed") {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
			if out != "" {
				t.Errorf("stdout not empty on error:\n%s", out)
			}
		})
	}
	// A later document's error also counts the empty ones.
	_, _, err := runStdin(t, nil, svc+"---\n---\n"+"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  template:\n    spec:\n      containers: nope\n", "inject", "-")
	if err == nil || !strings.Contains(err.Error(), `document 3: deployment "w": invalid pod template`) {
		t.Errorf("err = %v", err)
	}
}

// TestInjectEmptyInput: no objects at all (an empty pipe, a directory of
// other files) is not an error, but standard error says so, since kubectl
// apply would only say "no objects passed to apply".
func TestInjectEmptyInput(t *testing.T) {
	for _, verb := range []string{"inject", "uninject"} {
		for _, stdin := range []string{"", "---\n# nothing\n"} {
			var out, errb strings.Builder
			o := &Options{Out: &out, Err: &errb, In: strings.NewReader(stdin), ControlPlaneNamespace: "conduit"}
			root := NewRootCmd(o)
			root.SetArgs([]string{verb, "-"})
			if err := root.Execute(); err != nil {
				t.Fatalf("%s of %q: %v", verb, stdin, err)
			}
			if want := verb + ": warning: no Kubernetes objects in the input (read: standard input)\n"; errb.String() != want || out.Len() != 0 {
				t.Errorf("%s of %q: stderr %q stdout %q; want stderr %q", verb, stdin, errb.String(), out.String(), want)
			}
		}
	}
}
