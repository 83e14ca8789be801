package destination

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	"google.golang.org/protobuf/encoding/prototext"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGetDualStack: a dual-stack Service has one EndpointSlice per family,
// each listing every pod. A proxy gets each pod once, in one family: the
// Service's primary family for its name, the family of the cluster IP it
// asked for; a Service whose slices are all of the other family still
// resolves.
func TestGetDualStack(t *testing.T) {
	e := newEnv(t, readFixture(t, "dualstack.yaml"))
	tests := []struct {
		name, auth, want string
	}{
		{"name: the primary family (IPv4)", "api.ds.svc.cluster.local:80", "add 10.1.0.1:8080 10.1.0.2:8080"},
		{"name: the primary family (IPv6)", "api6.ds.svc.cluster.local:80", "add [fd00:1::1]:8080"},
		{"IPv4 cluster IP", "10.96.1.10:80", "add 10.1.0.1:8080 10.1.0.2:8080"},
		{"IPv6 cluster IP", "[fd00:96::10]:80", "add [fd00:1::1]:8080 [fd00:1::2]:8080"},
		{"IPv4 cluster IP of an IPv6-primary Service", "10.96.1.11:80", "add 10.1.0.1:8080"},
		{"headless pod name", "kv-0.kv.ds.svc.cluster.local:6000", "add 10.1.1.1:6000"},
		{"headless Service", "kv.ds.svc.cluster.local:6000", "add 10.1.1.1:6000"},
		{"no slice of the primary family", "legacy6.ds.svc.cluster.local:9000", "add [fd00:5::5]:9000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := e.get(t, tc.auth)
			if got := summary(s.next(t)); got != tc.want {
				t.Fatalf("snapshot of %s:\n got %s\nwant %s", tc.auth, got, tc.want)
			}
		})
	}
	// The profile of one pod of a dual-stack headless Service names it.
	p := e.getProfile(t, "kv-0.kv.ds.svc.cluster.local:6000", "").next(t)
	if got := p.GetEndpoint().GetAddr(); got.GetIp() != "10.1.1.1" || got.GetPort() != 6000 {
		t.Errorf("profile endpoint of kv-0 = %v, want 10.1.1.1:6000", prototext.Format(p))
	}
}

const lateService = `apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: emojivoto
spec:
  clusterIP: 10.96.0.77
  clusterIPs: [10.96.0.77]
  selector: {app: %[1]s}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-1
  namespace: emojivoto
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [%[2]s], conditions: {ready: true}}
`

// TestGetClusterIPFollowsService: a stream on "<ip>:<port>" resolves the IP
// at every change, not once: a Service created after the stream opened (a
// client that connects right after the Service is created, while the
// informer lags) or an IP handed to another Service after a delete are
// followed.
func TestGetClusterIPFollowsService(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s, _, _ := e.get(t, "10.96.0.77:80")
	p := e.getProfile(t, "10.96.0.77:80", "")
	if got := summary(s.next(t)); got != "none exists=false" {
		t.Fatalf("snapshot = %s", got)
	}
	if got := p.next(t); got.FullyQualifiedName != "" {
		t.Fatalf("profile before the Service = %s", prototext.Format(got))
	}
	del := func(name string) func(t *testing.T) {
		return func(t *testing.T) {
			if err := e.client.CoreV1().Services("emojivoto").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name    string
		do      func(t *testing.T)
		want    string
		profile string // the FQDN of the profile sent after the step
	}{
		{"the Service appears", func(t *testing.T) { e.apply(t, fmt.Sprintf(lateService, "late", "10.0.7.1")) },
			"add 10.0.7.1:8080", "late.emojivoto.svc.cluster.local"},
		{"the Service is deleted", del("late"), "none exists=false", ""},
		{"the IP goes to another Service", func(t *testing.T) { e.apply(t, fmt.Sprintf(lateService, "other", "10.0.7.2")) },
			"add 10.0.7.2:8080", "other.emojivoto.svc.cluster.local"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			// The Service and its slice are two events: "none exists=true"
			// may come in between.
			for got := summary(s.next(t)); got != st.want; got = summary(s.next(t)) {
				if got != "none exists=true" {
					t.Fatalf("got %s, want %s", got, st.want)
				}
			}
			for got := p.next(t); got.FullyQualifiedName != st.profile; got = p.next(t) {
				t.Logf("profile on the way: %s", prototext.Format(got))
			}
		})
	}
	// The old Service coming back under another IP does not take the stream.
	e.apply(t, strings.Replace(fmt.Sprintf(lateService, "late", "10.0.7.3"), "10.96.0.77", "10.96.0.78", 2))
	s.none(t, 200*time.Millisecond)
}

// TestGetDropsEndpointOfRecreatedPod: an EndpointSlice endpoint whose
// targetRef names a pod that was deleted and re-created under the same name
// (a StatefulSet pod) is the old pod's address until the EndpointSlice
// controller catches up: it must not be served with the new pod's details.
func TestGetDropsEndpointOfRecreatedPod(t *testing.T) {
	const fixture = `apiVersion: v1
kind: Service
metadata: {name: kv, namespace: emojivoto}
spec:
  clusterIP: None
  clusterIPs: [None]
  selector: {app: kv}
  ports: [{name: kv, port: 6000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kv-1
  namespace: emojivoto
  labels: {kubernetes.io/service-name: kv}
addressType: IPv4
ports: [{name: kv, port: 6000}]
endpoints:
- {addresses: [10.0.8.1], hostname: kv-0, conditions: {ready: true}, targetRef: {kind: Pod, name: kv-0, namespace: emojivoto, uid: old-0}}
- {addresses: [10.0.8.2], hostname: kv-1, conditions: {ready: true}, targetRef: {kind: Pod, name: kv-1, namespace: emojivoto}}
`
	pod := func(name, uid, phase, ip string) string {
		ips := ""
		if ip != "" {
			ips = fmt.Sprintf("\n  podIP: %s\n  podIPs: [{ip: %s}]", ip, ip)
		}
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: emojivoto, uid: %s, labels: {app: kv}}
spec: {containers: [{name: kv}]}
status:
  phase: %s%s
`, name, uid, phase, ips)
	}
	tests := []struct {
		name, pod, auth, remove string
	}{
		{"same name, new uid, not yet running", pod("kv-0", "new-0", "Pending", ""), "kv-0.kv.emojivoto.svc.cluster.local:6000", "10.0.8.1:6000"},
		{"same name, new uid, another IP", pod("kv-0", "new-0", "Running", "10.0.8.9"), "kv-0.kv.emojivoto.svc.cluster.local:6000", "10.0.8.1:6000"},
		{"no uid in the targetRef: the pod's IP is not the endpoint's", pod("kv-1", "new-1", "Running", "10.0.8.8"), "kv-1.kv.emojivoto.svc.cluster.local:6000", "10.0.8.2:6000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fixture, pod("kv-0", "old-0", "Running", "10.0.8.1"), pod("kv-1", "old-1", "Running", "10.0.8.2"))
			s, _, _ := e.get(t, tc.auth)
			if got := summary(s.next(t)); got != "add "+tc.remove {
				t.Fatalf("snapshot = %s", got)
			}
			name := strings.SplitN(tc.auth, ".", 2)[0]
			if err := e.client.CoreV1().Pods("emojivoto").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := summary(s.next(t)); got != "none exists=true" {
				t.Fatalf("after the pod's deletion: %s", got)
			}
			e.apply(t, tc.pod) // the StatefulSet controller re-creates it at once
			s.none(t, 200*time.Millisecond)
		})
	}
}

// TestSubscribeCancelLeavesNothing: many streams opened and cancelled, on
// names, cluster IPs, pod IPs and unknown targets, leave no topic, no
// dependency entry and no goroutine behind.
func TestSubscribeCancelLeavesNothing(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	before := runtime.NumGoroutine()
	auths := []string{"web.emojivoto.svc.cluster.local:80", "10.96.0.10:80", "10.0.0.1:8080", "nope.emojivoto.svc.cluster.local:80", "10.9.9.9:80", "example.com:443"}
	for i := range 200 {
		auth := auths[i%len(auths)]
		s, errc, cancel := e.get(t, auth)
		_ = s.next(t)
		pctx, pcancel := context.WithCancel(e.ctx)
		ps := newStream[pb.DestinationProfile](pctx)
		perrc := make(chan error, 1)
		go func() {
			perrc <- e.srv.GetProfile(&pb.GetDestination{Path: auth, ContextToken: `{"ns":"emojivoto"}`}, ps)
		}()
		_ = ps.next(t)
		cancel()
		pcancel()
		if err := <-errc; err != nil {
			t.Fatalf("Get %s: %v", auth, err)
		}
		if err := <-perrc; err != nil {
			t.Fatalf("GetProfile %s: %v", auth, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.x.endpoints.mu.Lock()
		eps, epDeps := len(e.x.endpoints.topics), len(e.x.endpoints.byDep)
		e.x.endpoints.mu.Unlock()
		e.x.profiles.mu.Lock()
		prs, prDeps := len(e.x.profiles.topics), len(e.x.profiles.byDep)
		e.x.profiles.mu.Unlock()
		g := runtime.NumGoroutine()
		if eps+epDeps+prs+prDeps == 0 && g <= before+5 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %d+%d endpoint topics/deps, %d+%d profile topics/deps, goroutines %d -> %d", eps, epDeps, prs, prDeps, before, g)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
