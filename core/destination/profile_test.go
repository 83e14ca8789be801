package destination

import (
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestGetProfile(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"), readFixture(t, "profiles.yaml"))
	wantRoutes := []*pb.Route{
		{
			Condition: &pb.RequestMatch{Match: &pb.RequestMatch_All{All: &pb.RequestMatch_Seq{Matches: []*pb.RequestMatch{
				{Match: &pb.RequestMatch_Method{Method: "GET"}},
				{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: "/api/list(/.*)?"}}},
			}}}},
			ResponseClasses: []*pb.ResponseClass{{
				Condition: &pb.ResponseMatch{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: 500, Max: 599}}},
				IsFailure: true,
			}},
			MetricsLabels: map[string]string{"route": "GET /api/list"},
			IsRetryable:   true,
			Timeout:       durationpb.New(250 * time.Millisecond),
		},
		{
			Condition:     &pb.RequestMatch{Match: &pb.RequestMatch_Not{Not: &pb.RequestMatch{Match: &pb.RequestMatch_Method{Method: "GET"}}}},
			MetricsLabels: map[string]string{"route": "POST"},
		},
	}
	tests := []struct {
		name, auth, token string
		want              *pb.DestinationProfile
	}{
		{"service profile, invalid route left out", "web.emojivoto.svc.cluster.local:80", "", &pb.DestinationProfile{
			FullyQualifiedName: "web.emojivoto.svc.cluster.local",
			Routes:             wantRoutes,
			RetryBudget:        &pb.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 5, Ttl: durationpb.New(30 * time.Second)},
		}},
		{"cluster IP looks up the service's profile", "10.96.0.10:80", `{"ns":"emojivoto"}`, &pb.DestinationProfile{
			FullyQualifiedName: "web.emojivoto.svc.cluster.local",
			Routes:             wantRoutes,
			RetryBudget:        &pb.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 5, Ttl: durationpb.New(30 * time.Second)},
		}},
		{"client namespace override", "web.emojivoto.svc.cluster.local:80", `{"ns":"canary"}`, &pb.DestinationProfile{
			FullyQualifiedName: "web.emojivoto.svc.cluster.local",
			RetryBudget:        defaultRetryBudget,
			DstOverrides:       []*pb.WeightedDst{{Authority: "web-v2.emojivoto.svc.cluster.local:80", Weight: 100}},
		}},
		{"opaque service port", "web.emojivoto.svc.cluster.local:6379", "", &pb.DestinationProfile{
			FullyQualifiedName: "web.emojivoto.svc.cluster.local",
			OpaqueProtocol:     true,
			Routes:             wantRoutes,
			RetryBudget:        &pb.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 5, Ttl: durationpb.New(30 * time.Second)},
		}},
		{"SMI TrafficSplit as dstOverrides", "db.emojivoto.svc.cluster.local:5432", "", &pb.DestinationProfile{
			FullyQualifiedName: "db.emojivoto.svc.cluster.local",
			OpaqueProtocol:     true,
			RetryBudget:        defaultRetryBudget,
			DstOverrides: []*pb.WeightedDst{
				{Authority: "db.emojivoto.svc.cluster.local:5432", Weight: 900},
				{Authority: "db-next.emojivoto.svc.cluster.local:5432", Weight: 100},
			},
		}},
		{"unknown service", "nope.emojivoto.svc.cluster.local:80", "", &pb.DestinationProfile{RetryBudget: defaultRetryBudget}},
		{"unknown ip", "10.9.9.9:3306", "", &pb.DestinationProfile{
			RetryBudget: defaultRetryBudget, OpaqueProtocol: true,
			Endpoint: &pb.WeightedAddr{Addr: &pb.TcpAddress{Ip: "10.9.9.9", Port: 3306}, Weight: DefaultWeight},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := e.getProfile(t, tc.auth, tc.token)
			got := s.next(t)
			if !proto.Equal(got, tc.want) {
				t.Fatalf("profile of %s:\n got %s\nwant %s", tc.auth, prototext.Format(got), prototext.Format(tc.want))
			}
		})
	}
	select {
	case ev := <-e.recorder.Events:
		if !strings.Contains(ev, "InvalidRoute") || !strings.Contains(ev, "spec.routes[1].condition.pathRegex") {
			t.Errorf("event = %q", ev)
		}
	default:
		t.Error("no Event for the invalid route")
	}
	select {
	case ev := <-e.recorder.Events:
		t.Errorf("the same invalid profile was reported twice: %q", ev)
	default:
	}
}

func TestGetProfilePodIP(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	p := e.getProfile(t, "10.0.0.2:8080", "").next(t)
	if !p.OpaqueProtocol {
		t.Error("port 8080 of a pod annotated opaque-ports=8080 is not opaque")
	}
	ep := p.GetEndpoint()
	if ep.GetTlsIdentity().GetDnsLikeIdentity() != "web.emojivoto.serviceaccount.identity.conduit.cluster.local" ||
		ep.GetProtocolHint().GetOpaque() == nil || ep.GetProtocolHint().GetInboundPort() != ProxyInboundPort ||
		ep.GetMetricLabels()["pod"] != "web-7d4b9c-bbbbb" {
		t.Errorf("endpoint = %s", prototext.Format(ep))
	}
	// Pod DNS names of a headless Service carry their pod too.
	p = e.getProfile(t, "db-0.db.emojivoto.svc.cluster.local:5432", "").next(t)
	if p.GetEndpoint().GetAddr().GetIp() != "10.0.1.1" || p.FullyQualifiedName != "db.emojivoto.svc.cluster.local" {
		t.Errorf("profile = %s", prototext.Format(p))
	}
}

func TestGetProfileUpdates(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s := e.getProfile(t, "web.emojivoto.svc.cluster.local:80", "")
	if p := s.next(t); len(p.Routes) != 0 {
		t.Fatalf("routes before any profile: %v", p.Routes)
	}
	e.apply(t, `apiVersion: conduit.dev/v1alpha2
kind: ServiceProfile
metadata:
  name: web.emojivoto.svc.cluster.local
  namespace: emojivoto
spec:
  routes:
  - name: all
    condition: {pathRegex: "/.*"}
`)
	if p := s.next(t); len(p.Routes) != 1 || p.Routes[0].MetricsLabels["route"] != "all" {
		t.Fatalf("after creating the profile: %s", prototext.Format(p))
	}
	// A change of the Service that does not change the profile sends nothing.
	e.apply(t, `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: emojivoto
  labels: {touched: "yes"}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
`)
	s.none(t, 100*time.Millisecond)
}

// TestGetProfileOpaqueFromPods: a Service port without the Service's
// annotation is opaque once every ready pod behind it marks its target port
// opaque (their own annotation, or their namespace's that the injector
// copied), so that client proxies do not wait for a server-speaks-first
// client to speak; one pod alone does not make it so.
func TestGetProfileOpaqueFromPods(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s := e.getProfile(t, "web.emojivoto.svc.cluster.local:80", "")
	if p := s.next(t); p.OpaqueProtocol {
		t.Fatal("opaque while one of the two ready pods (10.0.0.2) marks 8080 opaque")
	}
	aaaaa := func(annotations string) string {
		return `apiVersion: v1
kind: Pod
metadata:
  name: web-7d4b9c-aaaaa
  namespace: emojivoto
  labels: {app: web, pod-template-hash: 7d4b9c, conduit.dev/control-plane-ns: conduit}
  annotations: {` + annotations + `}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4b9c, uid: rs1, controller: true}
spec:
  serviceAccountName: web
  nodeName: node-a
  containers:
  - name: web
    ports: [{name: http, containerPort: 8080}]
status:
  phase: Running
  podIP: 10.0.0.1
  podIPs: [{ip: 10.0.0.1}]
`
	}
	// The other ready pod marks it too, by its port's name.
	e.apply(t, aaaaa(`config.conduit.dev/opaque-ports: "http, 6379,"`))
	if p := s.next(t); !p.OpaqueProtocol {
		t.Fatalf("not opaque once every ready pod marks the target port opaque: %s", prototext.Format(p))
	}
	e.apply(t, aaaaa(""))
	if p := s.next(t); p.OpaqueProtocol {
		t.Fatalf("still opaque after a pod dropped its annotation: %s", prototext.Format(p))
	}
}

// TestTranslateRoutesCombinators: all, any and not nest on both sides, the
// request's condition and the response classes'.
func TestTranslateRoutesCombinators(t *testing.T) {
	routes, errs := TranslateRoutes([]v1alpha2.RouteSpec{{
		Name: "r",
		Condition: &v1alpha2.RequestMatch{Any: []v1alpha2.RequestMatch{
			{Method: "put"},
			{All: []v1alpha2.RequestMatch{{PathRegex: "/a"}, {Not: &v1alpha2.RequestMatch{Method: "GET"}}}},
		}},
		ResponseClasses: []v1alpha2.ResponseClass{{
			Condition: &v1alpha2.ResponseMatch{Any: []v1alpha2.ResponseMatch{
				{Status: &v1alpha2.Range{Min: 500}},
				{All: []v1alpha2.ResponseMatch{{Status: &v1alpha2.Range{Max: 299}}, {Not: &v1alpha2.ResponseMatch{Status: &v1alpha2.Range{Min: 204, Max: 204}}}}},
			}},
			IsFailure: true,
		}},
	}})
	if len(errs) != 0 || len(routes) != 1 {
		t.Fatalf("routes=%v errs=%v, want one route", routes, errs)
	}
	want := &pb.Route{
		Condition: &pb.RequestMatch{Match: &pb.RequestMatch_Any{Any: &pb.RequestMatch_Seq{Matches: []*pb.RequestMatch{
			&pb.RequestMatch{Match: &pb.RequestMatch_Method{Method: "PUT"}},
			&pb.RequestMatch{Match: &pb.RequestMatch_All{All: &pb.RequestMatch_Seq{Matches: []*pb.RequestMatch{
				&pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: "/a"}}},
				&pb.RequestMatch{Match: &pb.RequestMatch_Not{Not: &pb.RequestMatch{Match: &pb.RequestMatch_Method{Method: "GET"}}}},
			}}}},
		}}}},
		ResponseClasses: []*pb.ResponseClass{{
			Condition: &pb.ResponseMatch{Match: &pb.ResponseMatch_Any{Any: &pb.ResponseMatch_Seq{Matches: []*pb.ResponseMatch{
				&pb.ResponseMatch{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: 500, Max: 599}}},
				&pb.ResponseMatch{Match: &pb.ResponseMatch_All{All: &pb.ResponseMatch_Seq{Matches: []*pb.ResponseMatch{
					&pb.ResponseMatch{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: 100, Max: 299}}},
					&pb.ResponseMatch{Match: &pb.ResponseMatch_Not{Not: &pb.ResponseMatch{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: 204, Max: 204}}}}},
				}}}},
			}}}},
			IsFailure: true,
		}},
		MetricsLabels: map[string]string{"route": "r"},
	}
	if !proto.Equal(routes[0], want) {
		t.Fatalf("route:\n%s\nwant:\n%s", prototext.Format(routes[0]), prototext.Format(want))
	}
}

func TestTranslateRoutesErrors(t *testing.T) {
	tests := []struct {
		name  string
		route v1alpha2.RouteSpec
		field string
	}{
		{"no condition", v1alpha2.RouteSpec{Name: "a"}, "spec.routes[0].condition: required"},
		{"two fields", v1alpha2.RouteSpec{Name: "a", Condition: &v1alpha2.RequestMatch{Method: "GET", PathRegex: "/"}}, "exactly one"},
		{"bad regex deep", v1alpha2.RouteSpec{Name: "a", Condition: &v1alpha2.RequestMatch{Any: []v1alpha2.RequestMatch{{Method: "GET"}, {Not: &v1alpha2.RequestMatch{PathRegex: "a**"}}}}}, "spec.routes[0].condition.any[1].not.pathRegex"},
		{"negative timeout", v1alpha2.RouteSpec{Name: "a", Condition: &v1alpha2.RequestMatch{Method: "GET"}, Timeout: "-1s"}, "spec.routes[0].timeout"},
		{"status range", v1alpha2.RouteSpec{Name: "a", Condition: &v1alpha2.RequestMatch{Method: "GET"}, ResponseClasses: []v1alpha2.ResponseClass{{Condition: &v1alpha2.ResponseMatch{Status: &v1alpha2.Range{Min: 500, Max: 400}}}}}, "responseClasses[0].condition.status: min 500 is greater than max 400"},
		{"status range deep", v1alpha2.RouteSpec{Name: "a", Condition: &v1alpha2.RequestMatch{Method: "GET"}, ResponseClasses: []v1alpha2.ResponseClass{{Condition: &v1alpha2.ResponseMatch{All: []v1alpha2.ResponseMatch{{Status: &v1alpha2.Range{Min: 500}}, {Not: &v1alpha2.ResponseMatch{Status: &v1alpha2.Range{Min: 500, Max: 400}}}}}}}}, "responseClasses[0].condition.all[1].not.status: min 500"},
		{"two response combinators", v1alpha2.RouteSpec{Name: "a", Condition: &v1alpha2.RequestMatch{Method: "GET"}, ResponseClasses: []v1alpha2.ResponseClass{{Condition: &v1alpha2.ResponseMatch{Any: []v1alpha2.ResponseMatch{{Status: &v1alpha2.Range{Min: 500}}}, Not: &v1alpha2.ResponseMatch{Status: &v1alpha2.Range{Min: 400}}}}}}, "responseClasses[0].condition: exactly one of all, any, not, status must be set (found 2)"},
		{"empty response match", v1alpha2.RouteSpec{Name: "a", Condition: &v1alpha2.RequestMatch{Method: "GET"}, ResponseClasses: []v1alpha2.ResponseClass{{Condition: &v1alpha2.ResponseMatch{Any: []v1alpha2.ResponseMatch{{}}}}}}, "responseClasses[0].condition.any[0]: exactly one of all, any, not, status must be set (found 0)"},
		{"first error first", v1alpha2.RouteSpec{Name: "a", Condition: &v1alpha2.RequestMatch{All: []v1alpha2.RequestMatch{{PathRegex: "("}}, Any: []v1alpha2.RequestMatch{{PathRegex: ")"}}}}, "spec.routes[0].condition.all[0].pathRegex"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			routes, errs := TranslateRoutes([]v1alpha2.RouteSpec{tc.route})
			if len(routes) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.field) {
				t.Fatalf("routes=%v errs=%v, want an error naming %q", routes, errs, tc.field)
			}
		})
	}
}

// TestServiceOpaquePortsAnnotation: a Service's opaque-ports may name its
// own ports; an invalid item is left out and reported once with a Warning
// Event on the Service (no webhook checks a Service's annotations).
func TestServiceOpaquePortsAnnotation(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"), `apiVersion: v1
kind: Service
metadata:
  name: banner
  namespace: emojivoto
  uid: banner-uid
  annotations: {config.conduit.dev/opaque-ports: "greeting, bogus"}
spec:
  clusterIP: 10.96.0.70
  clusterIPs: [10.96.0.70]
  selector: {app: banner}
  ports:
  - {name: greeting, port: 7000, targetPort: 7000}
  - {name: other, port: 7001, targetPort: 7001}
`)
	for port, want := range map[string]bool{"7000": true, "7001": false} {
		if p := e.getProfile(t, "banner.emojivoto.svc.cluster.local:"+port, "").next(t); p.OpaqueProtocol != want {
			t.Errorf("banner:%s opaque = %v, want %v", port, p.OpaqueProtocol, want)
		}
	}
	select {
	case ev := <-e.recorder.Events:
		if !strings.Contains(ev, "Warning InvalidOpaquePorts") || !strings.Contains(ev, `"bogus" is not a port`) || strings.Contains(ev, `"greeting"`) {
			t.Errorf("event = %q", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no Event for the invalid opaque-ports item")
	}
	select {
	case ev := <-e.recorder.Events:
		t.Errorf("the same annotation was reported twice: %q", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestTrafficSplitChoice: the dstOverrides a Service's TrafficSplits yield
// do not depend on the informer index's map order (two splits of one root
// Service, e.g. one a canary tool left behind: the oldest wins, then the
// first by name, on every recompute and every replica); a weight above
// what the wire's uint32 holds is clamped, not wrapped to a small number.
func TestTrafficSplitChoice(t *testing.T) {
	split := func(name, created string, backends string) string {
		return `apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  name: ` + name + `
  namespace: emojivoto
  creationTimestamp: "` + created + `"
spec:
  service: web
  backends:` + backends + "\n"
	}
	tests := []struct {
		name   string
		splits []string
		want   []*pb.WeightedDst
	}{
		{"oldest of two wins", []string{
			split("b-new", "2024-02-01T00:00:00Z", "\n  - {service: web-v3, weight: 1}"),
			split("a-old", "2024-01-01T00:00:00Z", "\n  - {service: web-v2, weight: 1}"),
		}, []*pb.WeightedDst{{Authority: "web-v2.emojivoto.svc.cluster.local:80", Weight: 1}}},
		{"same age: first by name", []string{
			split("z", "2024-01-01T00:00:00Z", "\n  - {service: web-z, weight: 1}"),
			split("m", "2024-01-01T00:00:00Z", "\n  - {service: web-m, weight: 1}"),
		}, []*pb.WeightedDst{{Authority: "web-m.emojivoto.svc.cluster.local:80", Weight: 1}}},
		{"weights beyond uint32 are clamped", []string{
			split("big", "2024-01-01T00:00:00Z", "\n  - {service: web, weight: 4294967296}\n  - {service: web-v2, weight: 1}"),
		}, []*pb.WeightedDst{
			{Authority: "web.emojivoto.svc.cluster.local:80", Weight: 4294967295},
			{Authority: "web-v2.emojivoto.svc.cluster.local:80", Weight: 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, append([]string{readFixture(t, "cluster.yaml")}, tc.splits...)...)
			for range 50 {
				got := e.x.trafficSplit(target{ns: "emojivoto", name: "web", port: 80, known: true})
				if len(got) != len(tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				for i := range got {
					if !proto.Equal(got[i], tc.want[i]) {
						t.Fatalf("got %v, want %v", got, tc.want)
					}
				}
			}
		})
	}
}
