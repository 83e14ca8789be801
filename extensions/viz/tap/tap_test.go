package tap

import (
	"context"
	"errors"
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

func TestStreamDialError(t *testing.T) {
	dial := func(context.Context, Target) (grpc.ClientConnInterface, func(), error) {
		return nil, nil, errors.New("port-forward refused")
	}
	err := Stream(context.Background(), []Target{{"ns", "web-0"}}, dial, &tapv1.ObserveRequest{}, func(Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "ns/web-0") || !strings.Contains(err.Error(), "port-forward refused") {
		t.Errorf("err = %v", err)
	}
}
