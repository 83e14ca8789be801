package cmd

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// clusterFrom returns the ConfigMaps and Secrets of an install's output, as
// `kubectl apply` would have created them.
func clusterFrom(t *testing.T, out string) []runtime.Object {
	t.Helper()
	var objs []runtime.Object
	for _, d := range docs(t, out) {
		b, _ := yaml.Marshal(d)
		switch d["kind"] {
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			if err := yaml.Unmarshal(b, cm); err != nil {
				t.Fatal(err)
			}
			objs = append(objs, cm)
		case "Secret":
			s := &corev1.Secret{}
			if err := yaml.Unmarshal(b, s); err != nil {
				t.Fatal(err)
			}
			objs = append(objs, s)
		}
	}
	return objs
}

func TestUpgrade(t *testing.T) {
	withVersion(t, "v1.2.3")
	installArgs := []string{"install", "--registry", "localhost/conduit", "--tag", "dev", "--proxy-log-level", "debug", "--ha"}
	installed, _, err := runWith(t, must(fakeKube(true)), installArgs...)
	if err != nil {
		t.Fatal(err)
	}
	// The generated identity material must survive the upgrade.
	k, _ := fakeKube(true, clusterFrom(t, installed)...)

	t.Run("no flags reproduces the install", func(t *testing.T) {
		out, _, err := runWith(t, k, "upgrade")
		if err != nil {
			t.Fatal(err)
		}
		if out != installed {
			t.Errorf("upgrade without flags differs from the install:\n%s", diff(installed, out))
		}
	})
	t.Run("new flags apply on top of the stored ones", func(t *testing.T) {
		out, _, err := runWith(t, k, "upgrade", "--proxy-cpu-request", "300m", "--set", "controllerLogLevel=warn")
		if err != nil {
			t.Fatal(err)
		}
		ms := docs(t, out)
		before := docs(t, installed)
		for _, name := range []string{trustRootsName} {
			if dataOf(find(ms, "ConfigMap", name))[trustRootsKey] != dataOf(find(before, "ConfigMap", name))[trustRootsKey] {
				t.Errorf("upgrade changed the trust anchors")
			}
		}
		if dataOf(find(ms, "Secret", issuerSecretName))["tls.key"] != dataOf(find(before, "Secret", issuerSecretName))["tls.key"] {
			t.Errorf("upgrade changed the issuer")
		}
		for _, want := range []string{"localhost/conduit/controller:dev", `cpu: "300m"`, "--log-level=warn", `CONDUIT_PROXY_LOG_LEVEL
          value: "debug"`, "replicas: 3"} {
			if !strings.Contains(out, want) {
				t.Errorf("upgrade output lacks %q", want)
			}
		}
		inst, _ := dataOf(find(ms, "ConfigMap", configMapName))["install"].(string)
		if !strings.Contains(inst, "request: 300m") || !strings.Contains(inst, "registry: localhost/conduit") {
			t.Errorf("stored settings not updated:\n%s", inst)
		}
	})
	t.Run("no control plane", func(t *testing.T) {
		_, _, err := runWith(t, must(fakeKube(true)), "upgrade")
		if err == nil || !strings.Contains(err.Error(), "mesh install") {
			t.Fatalf("err = %v, want a pointer to mesh install", err)
		}
	})
}
