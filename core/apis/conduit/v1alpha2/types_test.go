package v1alpha2

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func sample() *ServiceProfile {
	return &ServiceProfile{
		TypeMeta:   metav1.TypeMeta{APIVersion: "conduit.dev/v1alpha2", Kind: Kind},
		ObjectMeta: metav1.ObjectMeta{Name: "web.emojivoto.svc.cluster.local", Namespace: "emojivoto", Labels: map[string]string{"a": "b"}},
		Spec: ServiceProfileSpec{
			Routes: []RouteSpec{{
				Name: "GET /api",
				Condition: &RequestMatch{All: []RequestMatch{
					{Method: "GET"}, {Not: &RequestMatch{PathRegex: "/api/.*"}},
				}},
				ResponseClasses: []ResponseClass{{Condition: &ResponseMatch{Status: &Range{Min: 500, Max: 599}}, IsFailure: true}},
				IsRetryable:     true,
				Timeout:         "250ms",
			}},
			RetryBudget:  &RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, TTL: "10s"},
			DstOverrides: []WeightedDst{{Authority: "web-v2.emojivoto.svc.cluster.local:80", Weight: 100}},
		},
	}
}

func TestDeepCopyIsIndependent(t *testing.T) {
	in := sample()
	out := in.DeepCopy()
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("copy differs:\n%+v\n%+v", in, out)
	}
	out.Spec.Routes[0].Condition.All[1].Not.PathRegex = "changed"
	out.Spec.Routes[0].ResponseClasses[0].Condition.Status.Min = 400
	out.Spec.RetryBudget.RetryRatio = 1
	out.Spec.DstOverrides[0].Weight = 1
	out.Labels["a"] = "c"
	if in.Spec.Routes[0].Condition.All[1].Not.PathRegex != "/api/.*" ||
		in.Spec.Routes[0].ResponseClasses[0].Condition.Status.Min != 500 ||
		in.Spec.RetryBudget.RetryRatio != 0.2 || in.Spec.DstOverrides[0].Weight != 100 || in.Labels["a"] != "b" {
		t.Fatal("mutating the copy changed the original")
	}
}

func TestUnstructuredRoundTrip(t *testing.T) {
	in := sample()
	m, err := ToUnstructured(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := FromUnstructured(m)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip differs:\n%+v\n%+v", in, out)
	}
	if _, err := FromUnstructured(map[string]any{"spec": map[string]any{"routes": "nope"}}); err == nil {
		t.Fatal("decoding a malformed object succeeded")
	}
}

// JSON numbers without a fraction arrive as int64 from the API server.
func TestFromUnstructuredIntegralNumbers(t *testing.T) {
	sp, err := FromUnstructured(map[string]any{"spec": map[string]any{
		"retryBudget": map[string]any{"retryRatio": int64(1), "minRetriesPerSecond": int64(3), "ttl": "1s"},
		"routes": []any{map[string]any{"name": "r", "condition": map[string]any{"method": "GET"},
			"responseClasses": []any{map[string]any{"condition": map[string]any{"status": map[string]any{"min": int64(500)}}}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Spec.RetryBudget.RetryRatio != 1 || sp.Spec.RetryBudget.MinRetriesPerSecond != 3 || sp.Spec.Routes[0].ResponseClasses[0].Condition.Status.Min != 500 {
		t.Fatalf("decoded %+v", sp.Spec)
	}
}
