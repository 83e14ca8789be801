package cmd

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
)

func fakeProfiles() map[string]*destinationv1.DestinationProfile {
	budget := &destinationv1.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, Ttl: durationpb.New(10 * time.Second)}
	get := &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_Method{Method: "GET"}}
	routes := []*destinationv1.Route{
		{
			Condition: &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_All{All: &destinationv1.RequestMatch_Seq{Matches: []*destinationv1.RequestMatch{
				get, {Match: &destinationv1.RequestMatch_Path{Path: &destinationv1.PathMatch{Regex: "/api/list(/.*)?"}}},
			}}}},
			ResponseClasses: []*destinationv1.ResponseClass{{
				Condition: &destinationv1.ResponseMatch{Match: &destinationv1.ResponseMatch_Any{Any: &destinationv1.ResponseMatch_Seq{Matches: []*destinationv1.ResponseMatch{
					{Match: &destinationv1.ResponseMatch_Status{Status: &destinationv1.HttpStatusRange{Min: 500, Max: 599}}},
					{Match: &destinationv1.ResponseMatch_Status{Status: &destinationv1.HttpStatusRange{Min: 429, Max: 429}}},
				}}}},
				IsFailure: true,
			}},
			MetricsLabels: map[string]string{"route": "GET /api/list"},
			IsRetryable:   true,
			Timeout:       durationpb.New(250 * time.Millisecond),
		},
		{Condition: &destinationv1.RequestMatch{Match: &destinationv1.RequestMatch_Not{Not: get}}, MetricsLabels: map[string]string{"route": "POST"}},
	}
	return map[string]*destinationv1.DestinationProfile{
		"web.emojivoto.svc.cluster.local:80": {FullyQualifiedName: "web.emojivoto.svc.cluster.local", Routes: routes, RetryBudget: budget},
		"web.emojivoto.svc.cluster.local:80@canary": {FullyQualifiedName: "web.emojivoto.svc.cluster.local", RetryBudget: budget,
			DstOverrides: []*destinationv1.WeightedDst{{Authority: "web.emojivoto.svc.cluster.local:80", Weight: 900}, {Authority: "web-v2.emojivoto.svc.cluster.local:80", Weight: 100}}},
		"mysql.shop.svc.cluster.local:3306": {FullyQualifiedName: "mysql.shop.svc.cluster.local", OpaqueProtocol: true, RetryBudget: budget},
		"10.0.0.2:7200": {OpaqueProtocol: true, RetryBudget: budget, Endpoint: &destinationv1.WeightedAddr{
			Addr: &destinationv1.TcpAddress{Ip: "10.0.0.2", Port: 7200}, Weight: 10000,
			MetricLabels: map[string]string{"pod": "banner-1"},
			TlsIdentity:  &destinationv1.TlsIdentity{DnsLikeIdentity: "default.shop.serviceaccount.identity.conduit.cluster.local"},
		}},
		"nope.emojivoto.svc.cluster.local:80": {RetryBudget: budget},
	}
}

// runProfile runs `diagnostics profile` against a fake cluster whose
// destination pod is port-forwarded to addr; -n is namespace when set.
func runProfile(t *testing.T, addr string, pods []corev1.Pod, namespace string, args ...string) (string, error) {
	t.Helper()
	return runDestinationCmd(t, addr, pods, namespace, newDiagnosticsProfileCmd, args...)
}

func TestDiagnosticsProfile(t *testing.T) {
	addr := startFakeDestination(t)
	tests := []struct {
		name, golden, namespace string
		args                    []string
	}{
		{"routes", "diagnostics_profile_routes.golden", "", []string{"web.emojivoto.svc.cluster.local:80"}},
		{"client namespace split", "diagnostics_profile_split.golden", "canary", []string{"web.emojivoto.svc.cluster.local:80"}},
		{"opaque service", "diagnostics_profile_opaque.golden", "", []string{"mysql.shop.svc.cluster.local:3306"}},
		{"pod address", "diagnostics_profile_pod.golden", "", []string{"10.0.0.2:7200"}},
		{"unknown", "diagnostics_profile_unknown.golden", "", []string{"nope.emojivoto.svc.cluster.local:80"}},
		{"json", "diagnostics_profile_json.golden", "", []string{"web.emojivoto.svc.cluster.local:80", "-o", "json"}},
		{"opaque json", "diagnostics_profile_opaque_json.golden", "", []string{"mysql.shop.svc.cluster.local:3306", "-o", "json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runProfile(t, addr, destinationPods(), tc.namespace, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, out)
		})
	}
}
