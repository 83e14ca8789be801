package cmd

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var fixtureIdentity = []string{
	"--identity-trust-anchors-file", "testdata/ca.crt",
	"--identity-issuer-certificate-file", "testdata/issuer.crt",
	"--identity-issuer-key-file", "testdata/issuer.key",
}

func TestInstallGolden(t *testing.T) {
	withVersion(t, "v1.2.3")
	if err := os.WriteFile(t.TempDir()+"/x", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	values := t.TempDir() + "/values.yaml"
	if err := os.WriteFile(values, []byte("controllerLogLevel: debug\nproxy:\n  shutdownGracePeriod: 45s\n  discovery: {lastKnownMaxAge: 0s}\n  ipv6: \"off\"\ncommonLabels:\n  team: platform\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, golden string
		args         []string
	}{
		{"default", "install_default.golden", append([]string{"install", "--ignore-cluster"}, fixtureIdentity...)},
		{"ha", "install_ha.golden", append([]string{"install", "--ignore-cluster", "--ha"}, fixtureIdentity...)},
		{"custom values", "install_custom.golden", append([]string{"install", "--ignore-cluster",
			"--registry", "localhost/conduit", "--tag", "dev", "--proxy-log-level", "debug",
			"--proxy-cpu-request", "200m", "--proxy-memory-limit", "300Mi", "--default-opaque-ports", "3306,5432", "--cluster-networks", "10.0.0.0/8,fd00::/8",
			"--identity-trust-domain", "example.org", "--cluster-domain", "cluster.example",
			"-f", values, "--set", "proxyInjector.failurePolicy=Fail", "--set", "proxy.discovery.idleTimeout=10s", "--set-string", "podAnnotations.note=42"}, fixtureIdentity...)},
		{"external issuer", "install_external_issuer.golden", []string{"install", "--ignore-cluster",
			"--identity-external-issuer", "--identity-trust-anchors-file", "testdata/ca.crt"}},
		{"other namespace", "install_namespace.golden", append([]string{"install", "--ignore-cluster", "--conduit-namespace", "mesh-system"}, fixtureIdentity...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runWith(t, nil, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, out)
		})
	}
}

// The CRDs' templates belong to their API's owners: check the shape of the
// output rather than a golden file.
func TestInstallCRDs(t *testing.T) {
	out, _, err := runWith(t, nil, "install", "--crds")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs(t, out) {
		if d["kind"] != "CustomResourceDefinition" {
			t.Errorf("install --crds printed a %v", d["kind"])
		}
	}
	out2, _, _ := runWith(t, nil, "upgrade", "--crds")
	if out2 != out {
		t.Error("upgrade --crds differs from install --crds")
	}
}

func TestUninstallGolden(t *testing.T) {
	out, _, err := runWith(t, nil, "uninstall", "--force")
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, d := range strings.Split(strings.TrimPrefix(out, "---\n"), "---\n") {
		if !strings.Contains(d, "kind: CustomResourceDefinition\n") {
			kept = append(kept, "---\n"+d)
		}
	}
	golden(t, "uninstall.golden", strings.Join(kept, ""))
	if find(docs(t, out), "Namespace", "conduit") == nil {
		t.Errorf("uninstall does not delete the namespace")
	}
}

// docs splits a YAML stream into objects.
func docs(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, d := range strings.Split(s, "\n---\n") {
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(strings.TrimPrefix(d, "---\n")), &m); err != nil {
			t.Fatalf("invalid YAML document: %v\n%s", err, d)
		}
		if len(m) > 0 {
			out = append(out, m)
		}
	}
	return out
}

func find(ms []map[string]any, kind, name string) map[string]any {
	for _, m := range ms {
		if m["kind"] == kind && getPath(m, "metadata.name") == name {
			return m
		}
	}
	return nil
}

func TestInstallGeneratesIdentity(t *testing.T) {
	out, _, err := runWith(t, nil, "install", "--ignore-cluster")
	if err != nil {
		t.Fatal(err)
	}
	ms := docs(t, out)
	cm := find(ms, "ConfigMap", trustRootsName)
	sec := find(ms, "Secret", issuerSecretName)
	if cm == nil || sec == nil {
		t.Fatalf("trust roots or issuer missing from the output")
	}
	roots, err := pki.ParseCertificates([]byte(dataOf(cm)[trustRootsKey].(string)))
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	b, _ := yaml.Marshal(sec)
	if err := yaml.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	iss, err := pki.LoadCA(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.VerifyIssuer(iss, roots, time.Now()); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(roots[0].NotAfter); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("trust anchor valid for %s, want one year", d)
	}
	if string(s.Data["ca.crt"]) != string(pki.CertPEM(roots[0])) {
		t.Errorf("issuer Secret's ca.crt is not the trust anchor")
	}
	// Identity material never lands in the stored install settings.
	cfg := find(ms, "ConfigMap", configMapName)
	if inst, _ := getPath(cfg, "data.install").(string); strings.Contains(inst, "BEGIN") {
		t.Errorf("install settings hold identity material:\n%s", inst)
	}
	// Two installs generate different roots.
	out2, _, _ := runWith(t, nil, "install", "--ignore-cluster")
	if dataOf(find(docs(t, out2), "ConfigMap", trustRootsName))[trustRootsKey] == dataOf(cm)[trustRootsKey] {
		t.Error("two installs generated the same trust anchor")
	}
}

func TestInstallErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"issuer not signed by the anchors", []string{"install", "--ignore-cluster", "--identity-trust-anchors-file", "testdata/other-ca.crt",
			"--identity-issuer-certificate-file", "testdata/issuer.crt", "--identity-issuer-key-file", "testdata/issuer.key"}, "does not chain to the trust anchors"},
		{"issuer without key", []string{"install", "--ignore-cluster", "--identity-trust-anchors-file", "testdata/ca.crt",
			"--identity-issuer-certificate-file", "testdata/issuer.crt"}, "give both"},
		{"key is not a certificate", []string{"install", "--ignore-cluster", "--identity-trust-anchors-file", "testdata/issuer.key"}, "expected a PEM bundle"},
		{"anchors without issuer", []string{"install", "--ignore-cluster", "--identity-trust-anchors-file", "testdata/ca.crt"}, "without an issuer"},
		{"external issuer without anchors", []string{"install", "--ignore-cluster", "--identity-external-issuer"}, "needs --identity-trust-anchors-file"},
		{"issuer without anchors via --set", []string{"install", "--ignore-cluster", "--set", "identity.issuer.crtPEM=x"}, "no trust anchors"},
		{"bad log level", []string{"install", "--ignore-cluster", "--proxy-log-level", "loud"}, "value must be one of"},
		{"bad set", []string{"install", "--ignore-cluster", "--set", "proxy"}, "--set \"proxy\""},
		{"unknown value", []string{"install", "--ignore-cluster", "--set", "proxy.colour=blue"}, "colour"},
		{"bad ipv6 mode", []string{"install", "--ignore-cluster", "--set", "proxy.ipv6=dual"}, "at '/proxy/ipv6': value must be one of 'auto', 'on', 'off'"},
		// A values file's bare off is YAML 1.1's false.
		{"unquoted ipv6 off", []string{"install", "--ignore-cluster", "-f", "testdata/ipv6-unquoted.yaml"}, "at '/proxy/ipv6': got boolean, want string"},
		{"missing values file", []string{"install", "--ignore-cluster", "-f", "testdata/nope.yaml"}, "read values file"},
		{"bad namespace", []string{"install", "--ignore-cluster", "--conduit-namespace", "Bad_NS"}, "controlPlaneNamespace"},
		// The schema lets these through; the injector, the destination service
		// and the proxies would refuse them once installed.
		{"opaque port 0", []string{"install", "--ignore-cluster", "--default-opaque-ports", "3306,0"}, `proxy.opaquePorts: ports: "0" is not a port in 1-65535`},
		{"reversed range", []string{"install", "--ignore-cluster", "--set", "proxyInit.skipOutboundPorts=90-80"}, `proxyInit.skipOutboundPorts: ports: "90-80" is a range that ends below its start`},
		{"port not a number", []string{"install", "--ignore-cluster", "--default-opaque-ports", "mysql"}, "defaultOpaquePorts"},
		// The other commands find the control plane with --conduit-namespace:
		// a namespace set as a value would install it where they do not look.
		{"namespace as a value", []string{"install", "--ignore-cluster", "--set", "controlPlaneNamespace=mesh-system"}, "controlPlaneNamespace mesh-system (from --set or --values) differs from --conduit-namespace conduit: pass --conduit-namespace mesh-system"},
		{"namespace value against the flag", []string{"install", "--ignore-cluster", "--conduit-namespace", "mesh-system", "--set", "controlPlaneNamespace=conduit"}, "differs from --conduit-namespace mesh-system"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runWith(t, nil, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestInstallClusterChecks(t *testing.T) {
	existing := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: configMapName, Namespace: "conduit"}}
	cases := []struct {
		name string
		k    *Kube
		want string // "" = success
	}{
		{"no CRDs", must(fakeKube(false)), "mesh install --crds"},
		{"already installed", must(fakeKube(true, existing)), "mesh upgrade"},
		{"ready", must(fakeKube(true)), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runWith(t, tc.k, "install")
			if tc.want == "" {
				if err != nil || !strings.Contains(out, "kind: Deployment") {
					t.Fatalf("install = %v, output %d bytes", err, len(out))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func dataOf(m map[string]any) map[string]any {
	d, _ := m["data"].(map[string]any)
	return d
}

func must(k *Kube, _ any) *Kube { return k }
