package tap

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
	"google.golang.org/grpc"
)

func TestFilterRequest(t *testing.T) {
	r, err := Filter{To: &metrics.Resource{Kind: metrics.KindNamespace, Name: "emojivoto"}, Method: "post", Limit: 3}.Request()
	if err != nil {
		t.Fatal(err)
	}
	m := r.GetMatch()
	if m.GetDirection() != tapv1.Direction_OUTBOUND || m.GetMethod() != "POST" || len(m.GetDestinationLabels()) != 1 || m.GetDestinationLabels()["namespace"] != "emojivoto" || r.GetLimit() != 3 {
		t.Errorf("request = %v", r)
	}
	r, err = Filter{}.Request()
	if err != nil || r.GetMatch().GetDirection() != tapv1.Direction_DIRECTION_UNSPECIFIED {
		t.Errorf("empty filter = %v, %v", r, err)
	}
	for _, f := range []Filter{{PathPrefix: "api"}, {To: &metrics.Resource{Kind: metrics.KindDeployment}}} {
		if _, err := f.Request(); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}

// TestFilterDestinationLabels: --to matches the destination's metric labels
// as the destination service names them (a Job's is k8s_job, not job).
func TestFilterDestinationLabels(t *testing.T) {
	for _, tc := range []struct {
		to   metrics.Resource
		want map[string]string
	}{
		{metrics.Resource{Kind: metrics.KindDeployment, Namespace: "ns", Name: "web"}, map[string]string{"namespace": "ns", "deployment": "web"}},
		{metrics.Resource{Kind: metrics.KindJob, Namespace: "ns", Name: "backup"}, map[string]string{"namespace": "ns", "k8s_job": "backup"}},
		{metrics.Resource{Kind: metrics.KindService, Namespace: "ns", Name: "web-svc"}, map[string]string{"namespace": "ns", "service": "web-svc"}},
		{metrics.Resource{Kind: metrics.KindPod, Namespace: "ns", Name: "web-0"}, map[string]string{"namespace": "ns", "pod": "web-0"}},
	} {
		r, err := Filter{To: &tc.to}.Request()
		if err != nil {
			t.Fatal(err)
		}
		if got := r.GetMatch().GetDestinationLabels(); !maps.Equal(got, tc.want) {
			t.Errorf("--to %s: destination labels = %v, want %v", tc.to, got, tc.want)
		}
	}
}

func TestStreamDialError(t *testing.T) {
	dial := func(context.Context, Target) (grpc.ClientConnInterface, func(), error) {
		return nil, nil, errors.New("port-forward refused")
	}
	err := Stream(context.Background(), []Target{{"ns", "web-0"}}, dial, &tapv1.ObserveRequest{}, func(Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "ns/web-0") || !strings.Contains(err.Error(), "port-forward refused") {
		t.Errorf("err = %v", err)
	}
}
