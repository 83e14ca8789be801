package framework

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"TestCluster/DNS_resolves", 63, "testcluster-dns-resolves"},
		{"--Weird__Name--", 63, "weird-name"},
		{"abcdefghij", 5, "abcde"},
		{"abcd-efgh", 5, "abcd"},
		{"///", 10, "x"},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in, tt.max); got != tt.want {
			t.Errorf("sanitize(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestDecodeManifests(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantKinds []string
		wantErr   string
	}{
		{name: "multi-document", in: "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n", wantKinds: []string{"Service", "Deployment"}},
		{name: "list", in: `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}]}`, wantKinds: []string{"ConfigMap"}},
		{name: "comments only", in: "# nothing\n---\n", wantKinds: nil},
		{name: "no kind", in: "apiVersion: v1\nmetadata: {name: a}\n", wantErr: "missing apiVersion or kind"},
		{name: "no name", in: "apiVersion: v1\nkind: Service\n", wantErr: "missing metadata.name"},
		{name: "bad yaml", in: "apiVersion: v1\nkind: [\n", wantErr: "manifest document 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeManifests([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.GetKind())
			}
			if strings.Join(kinds, ",") != strings.Join(tt.wantKinds, ",") {
				t.Errorf("kinds = %v, want %v", kinds, tt.wantKinds)
			}
		})
	}
}

func TestFormatEventsOldestFirst(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(int64(s), 0)) }
	events := []corev1.Event{
		{Reason: "Second", LastTimestamp: at(20), InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p"}, Message: "b", Count: 2},
		{Reason: "First", LastTimestamp: at(10), InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p"}, Message: "a"},
	}
	out := formatEvents(events)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "First") || !strings.Contains(lines[1], "Second") || !strings.Contains(lines[1], "(x2)") {
		t.Errorf("events:\n%s", out)
	}
}

func TestArtifactsDir(t *testing.T) {
	f := &Framework{Artifacts: "/a"}
	if got := f.ArtifactsDir(t); got != "/a/TestArtifactsDir" {
		t.Errorf("ArtifactsDir = %s", got)
	}
	t.Run("sub test: x", func(t *testing.T) {
		if got := f.ArtifactsDir(t); got != "/a/TestArtifactsDir__sub_test__x" {
			t.Errorf("ArtifactsDir = %s", got)
		}
	})
}

func TestProxyEnv(t *testing.T) {
	env := func(name, value string) []corev1.EnvVar { return []corev1.EnvVar{{Name: name, Value: value}} }
	native := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "conduit-init", Env: env("X", "init")}, {Name: "conduit-proxy", Env: env("X", "native")}},
		Containers:     []corev1.Container{{Name: "app", Env: env("X", "app")}},
	}}
	regular := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Env: env("X", "app")}, {Name: "conduit-proxy", Env: env("X", "regular")}}}}
	for _, tt := range []struct {
		pod       *corev1.Pod
		name      string
		want      string
		wantFound bool
	}{
		{native, "X", "native", true},
		{regular, "X", "regular", true},
		{native, "Y", "", false},
		{&corev1.Pod{}, "X", "", false},
	} {
		if got, ok := ProxyEnv(tt.pod, tt.name); got != tt.want || ok != tt.wantFound {
			t.Errorf("ProxyEnv(%s) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.wantFound)
		}
	}
}
