package kubefixture

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Decode splits each of docs at its "---" lines and decodes every document
// that is not empty or comments only: typed holds those of kinds client-go's
// scheme knows, custom the others as *unstructured.Unstructured. A document
// that is not YAML, or has no apiVersion or kind, is an error naming it.
func Decode(docs ...string) (typed, custom []runtime.Object, err error) {
	for _, all := range docs {
		for _, doc := range strings.Split(all, "\n---") {
			if isBlank(doc) {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				return nil, nil, fmt.Errorf("kubefixture: %w in:\n%s", err, doc)
			}
			if meta.APIVersion == "" || meta.Kind == "" {
				return nil, nil, fmt.Errorf("kubefixture: a document without apiVersion or kind:\n%s", doc)
			}
			if scheme.Scheme.Recognizes(schema.FromAPIVersionAndKind(meta.APIVersion, meta.Kind)) {
				obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
				if err != nil {
					return nil, nil, fmt.Errorf("kubefixture: %w in:\n%s", err, doc)
				}
				typed = append(typed, obj)
				continue
			}
			j, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				return nil, nil, fmt.Errorf("kubefixture: %w in:\n%s", err, doc)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(j); err != nil {
				return nil, nil, fmt.Errorf("kubefixture: %w in:\n%s", err, doc)
			}
			custom = append(custom, u)
		}
	}
	return typed, custom, nil
}

// Objects is Decode for a test: it fails t on an error.
func Objects(t testing.TB, docs ...string) (typed, custom []runtime.Object) {
	t.Helper()
	typed, custom, err := Decode(docs...)
	if err != nil {
		t.Fatal(err)
	}
	return typed, custom
}

// isBlank reports whether doc has nothing but blank and comment lines.
func isBlank(doc string) bool {
	for l := range strings.SplitSeq(doc, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}
