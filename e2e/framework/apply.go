package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// FieldManager is the server-side apply field manager of the e2e tests.
const FieldManager = "conduit-e2e"

// DecodeManifests splits a multi-document YAML (or JSON) stream into objects, skipping empty
// documents. A List is flattened into its items.
func DecodeManifests(manifests []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for i := 1; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("e2e: manifest document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("e2e: manifest document %d: %w", i, err)
			}
			for j := range list.Items {
				objs = append(objs, &list.Items[j])
			}
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("e2e: manifest document %d: missing apiVersion or kind", i)
		}
		if u.GetName() == "" {
			return nil, fmt.Errorf("e2e: manifest document %d (%s): missing metadata.name", i, u.GetKind())
		}
		objs = append(objs, u)
	}
}

// resource returns the dynamic client of an object's resource, in namespace ns (used when the
// object is namespaced and does not name its namespace).
func (f *Framework) resource(u *unstructured.Unstructured, ns string) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := f.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		f.Mapper.Reset() // a CRD applied a moment ago
		m, err = f.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("e2e: %s %s: %w", gvk.Kind, u.GetName(), err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return f.Dynamic.Resource(m.Resource), nil
	}
	if u.GetNamespace() == "" {
		u.SetNamespace(ns)
	}
	if u.GetNamespace() == "" {
		return nil, fmt.Errorf("e2e: %s %s is namespaced but has no namespace", gvk.Kind, u.GetName())
	}
	return f.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace()), nil
}

// Apply server-side applies every object of manifests, defaulting the namespace of namespaced
// objects to ns, and returns the applied objects. CRDs applied in the same call are waited for
// (Established) before the objects after them. It fails the test on error.
func (f *Framework) Apply(t testing.TB, ns string, manifests string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := f.ApplyE(Context(t, 2*time.Minute), ns, []byte(manifests))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// ApplyE is Apply returning the error.
func (f *Framework) ApplyE(ctx context.Context, ns string, manifests []byte) ([]*unstructured.Unstructured, error) {
	objs, err := DecodeManifests(manifests)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, u := range objs {
		var applied *unstructured.Unstructured
		// Retry briefly: a resource of a freshly established CRD may not be served yet.
		for attempt := 0; ; attempt++ {
			var ri dynamic.ResourceInterface
			ri, err = f.resource(u, ns)
			if err == nil {
				applied, err = ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
			}
			if err == nil || attempt >= 20 || ctx.Err() != nil {
				break
			}
			f.Mapper.Reset()
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil {
			return out, fmt.Errorf("e2e: applying %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		out = append(out, applied)
		if u.GetKind() == "CustomResourceDefinition" {
			if err := f.waitCRD(ctx, u.GetName()); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func (f *Framework) waitCRD(ctx context.Context, name string) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	err := poll(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		crd, err := f.Dynamic.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("e2e: CRD %s not established: %w", name, err)
	}
	f.Mapper.Reset()
	return nil
}

// Delete deletes every object of manifests (missing ones are ignored).
func (f *Framework) Delete(t testing.TB, ns string, manifests string) {
	t.Helper()
	objs, err := DecodeManifests([]byte(manifests))
	if err != nil {
		t.Fatal(err)
	}
	ctx := Context(t, time.Minute)
	for i := len(objs) - 1; i >= 0; i-- {
		u := objs[i]
		ri, err := f.resource(u, ns)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !isNotFound(err) {
			t.Errorf("e2e: deleting %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}
