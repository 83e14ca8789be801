package destination

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// summary renders an update compactly: "add 10.0.0.1:8080/h2/web.emojivoto",
// "remove 10.0.0.1:8080", "none exists=true".
func summary(u *pb.Update) string {
	switch v := u.Update.(type) {
	case *pb.Update_Add:
		var parts []string
		for _, a := range v.Add.Addrs {
			parts = append(parts, addrSummary(a))
		}
		sort.Strings(parts)
		return "add " + strings.Join(parts, " ")
	case *pb.Update_Remove:
		var parts []string
		for _, a := range v.Remove.Addrs {
			parts = append(parts, addrKey(a))
		}
		sort.Strings(parts)
		return "remove " + strings.Join(parts, " ")
	case *pb.Update_NoEndpoints:
		return fmt.Sprintf("none exists=%t", v.NoEndpoints.Exists)
	}
	return "?"
}

func addrSummary(a *pb.WeightedAddr) string {
	s := addrKey(a.Addr)
	switch {
	case a.ProtocolHint.GetH2() != nil:
		s += "/h2"
	case a.ProtocolHint.GetOpaque() != nil:
		s += fmt.Sprintf("/opaque:%d", a.ProtocolHint.GetInboundPort())
	}
	if id := a.TlsIdentity.GetDnsLikeIdentity(); id != "" {
		s += "/" + strings.TrimSuffix(id, ".serviceaccount.identity.conduit.cluster.local")
	}
	return s
}

func TestGetSnapshot(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	tests := []struct {
		name, auth, want string
	}{
		{"service by port name resolves target port", "web.emojivoto.svc.cluster.local:80",
			"add 10.0.0.1:8080/h2/web.emojivoto 10.0.0.2:8080/opaque:4143/web.emojivoto"},
		{"default opaque port", "web.emojivoto.svc.cluster.local:6379",
			"add 10.0.0.1:6379/opaque:4143/web.emojivoto 10.0.0.2:6379/h2/web.emojivoto"},
		{"cluster IP resolves to its service", "10.96.0.10:80",
			"add 10.0.0.1:8080/h2/web.emojivoto 10.0.0.2:8080/opaque:4143/web.emojivoto"},
		{"pod IP", "10.0.0.1:8080", "add 10.0.0.1:8080/h2/web.emojivoto"},
		{"unmeshed pod IP has no identity", "10.0.0.9:80", "add 10.0.0.9:80"},
		{"statefulset pod DNS name", "db-1.db.emojivoto.svc.cluster.local:5432", "add 10.0.1.2:5432/opaque:4143/db.emojivoto"},
		{"headless service", "db.emojivoto.svc.cluster.local:5432", "add 10.0.1.1:5432/opaque:4143/db.emojivoto 10.0.1.2:5432/opaque:4143/db.emojivoto"},
		{"service without selector", "external-db.emojivoto.svc.cluster.local:3306", "add 192.168.5.5:13306"},
		{"TCP port of a port number also served over UDP", "dns.emojivoto.svc.cluster.local:53", "add 10.0.3.1:2053"},
		{"ExternalName", "search.emojivoto.svc.cluster.local:80", "none exists=false"},
		{"service with no endpoints", "empty.emojivoto.svc.cluster.local:80", "none exists=true"},
		{"port the service does not expose", "web.emojivoto.svc.cluster.local:81", "none exists=true"},
		{"unknown service", "nope.emojivoto.svc.cluster.local:80", "none exists=false"},
		{"unknown pod IP", "10.9.9.9:80", "none exists=false"},
		{"name outside the cluster", "example.com:443", "none exists=false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := e.get(t, tc.auth)
			if got := summary(s.next(t)); got != tc.want {
				t.Fatalf("snapshot of %s:\n got %s\nwant %s", tc.auth, got, tc.want)
			}
			s.none(t, 50*time.Millisecond)
		})
	}
}

func TestGetLabelsAndIdentity(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s, _, _ := e.get(t, "web.emojivoto.svc.cluster.local:80")
	add := s.next(t).GetAdd()
	if add == nil {
		t.Fatal("first message is not an add")
	}
	if got := add.MetricLabels; got["namespace"] != "emojivoto" || got["service"] != "web" {
		t.Errorf("set labels = %v", got)
	}
	byIP := map[string]*pb.WeightedAddr{}
	for _, a := range add.Addrs {
		byIP[a.Addr.Ip] = a
	}
	a := byIP["10.0.0.1"]
	want := map[string]string{"pod": "web-7d4b9c-aaaaa", "deployment": "web", "serviceaccount": "web", "zone": "zone-a"}
	for k, v := range want {
		if a.MetricLabels[k] != v {
			t.Errorf("label %s = %q, want %q (all: %v)", k, a.MetricLabels[k], v, a.MetricLabels)
		}
	}
	if a.Weight != DefaultWeight {
		t.Errorf("weight = %d", a.Weight)
	}
	if id := a.TlsIdentity.GetDnsLikeIdentity(); id != "web.emojivoto.serviceaccount.identity.conduit.cluster.local" || a.TlsIdentity.GetServerName() != id {
		t.Errorf("identity = %v", a.TlsIdentity)
	}
	if z := byIP["10.0.0.2"].MetricLabels["zone"]; z != "zone-b" {
		t.Errorf("the EndpointSlice's zone must win over the node's: %q", z)
	}
}

func TestGetBadAuthority(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	for _, auth := range []string{"", "web.emojivoto.svc.cluster.local:http", "a.b.c.d.svc.cluster.local:80", "10.0.0.1"} {
		_, errc, _ := e.get(t, auth)
		select {
		case err := <-errc:
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%q: err = %v, want InvalidArgument", auth, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: stream did not fail", auth)
		}
	}
}

const sliceTmpl = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: emojivoto
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:%s`

func endpointsYAML(ips ...string) string {
	if len(ips) == 0 {
		return " []\n"
	}
	var b strings.Builder
	b.WriteString("\n")
	for _, ip := range ips {
		fmt.Fprintf(&b, "- addresses: [%s]\n  conditions: {ready: true}\n", ip)
	}
	return b.String()
}

func TestGetDeltas(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s, _, _ := e.get(t, "web.emojivoto.svc.cluster.local:80")
	if got := summary(s.next(t)); !strings.HasPrefix(got, "add 10.0.0.1:8080") {
		t.Fatalf("snapshot = %s", got)
	}
	steps := []struct {
		name string
		do   func(t *testing.T)
		want []string
	}{
		{"scale up", func(t *testing.T) {
			e.apply(t, fmt.Sprintf(sliceTmpl, endpointsYAML("10.0.0.1", "10.0.0.2", "10.0.0.4")))
		}, []string{
			// 10.0.0.1 and .2 lose their pods' details: the new slice has no targetRef.
			"add 10.0.0.1:8080 10.0.0.2:8080 10.0.0.4:8080",
		}},
		{"scale down", func(t *testing.T) {
			e.apply(t, fmt.Sprintf(sliceTmpl, endpointsYAML("10.0.0.4")))
		}, []string{"remove 10.0.0.1:8080 10.0.0.2:8080"}},
		{"replace", func(t *testing.T) {
			e.apply(t, fmt.Sprintf(sliceTmpl, endpointsYAML("10.0.0.5")))
		}, []string{"remove 10.0.0.4:8080", "add 10.0.0.5:8080"}},
		{"scale to zero", func(t *testing.T) {
			e.apply(t, fmt.Sprintf(sliceTmpl, endpointsYAML()))
		}, []string{"none exists=true"}},
		{"scale from zero", func(t *testing.T) {
			e.apply(t, fmt.Sprintf(sliceTmpl, endpointsYAML("10.0.0.6")))
		}, []string{"add 10.0.0.6:8080"}},
		{"service deleted", func(t *testing.T) {
			if err := e.client.CoreV1().Services("emojivoto").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"none exists=false"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			start := time.Now()
			st.do(t)
			for _, want := range st.want {
				if got := summary(s.next(t)); got != want {
					t.Fatalf("got %s, want %s", got, want)
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("update took %s", d)
			}
			s.none(t, 50*time.Millisecond)
		})
	}
}

func TestGetFollowsPods(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s, _, _ := e.get(t, "10.0.0.9:80")
	if got := summary(s.next(t)); got != "add 10.0.0.9:80" {
		t.Fatalf("snapshot = %s", got)
	}
	// The pod gets meshed (recreated with the label): the endpoint gains an identity.
	e.apply(t, `apiVersion: v1
kind: Pod
metadata:
  name: legacy
  namespace: emojivoto
  labels: {app: legacy, conduit.dev/control-plane-ns: conduit}
spec:
  serviceAccountName: legacy
  containers: [{name: legacy}]
status:
  phase: Running
  podIP: 10.0.0.9
  podIPs: [{ip: 10.0.0.9}]
`)
	if got, want := summary(s.next(t)), "add 10.0.0.9:80/h2/legacy.emojivoto"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if err := e.client.CoreV1().Pods("emojivoto").Delete(context.Background(), "legacy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := summary(s.next(t)), "none exists=false"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// A stuck subscriber must not delay another one, and must only get the
// latest state once it reads again.
func TestSlowSubscriberCoalesces(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	const auth = "web.emojivoto.svc.cluster.local:80"
	stuck, _, _ := e.get(t, auth)
	_ = stuck.next(t) // snapshot
	stuck.gate = make(chan struct{})

	fast, _, _ := e.get(t, auth)
	_ = fast.next(t)

	// The stuck stream's first send blocks; the fast one sees every change.
	for i := 10; i < 30; i++ {
		e.apply(t, fmt.Sprintf(sliceTmpl, endpointsYAML(fmt.Sprintf("10.0.2.%d", i))))
		deadline := time.After(2 * time.Second)
		want := fmt.Sprintf("add 10.0.2.%d:8080", i)
	wait:
		for {
			select {
			case m := <-fast.msgs:
				if summary(m) == want {
					break wait
				}
			case <-deadline:
				t.Fatalf("fast stream did not see %s while the other was stuck", want)
			}
		}
	}
	close(stuck.gate) // unstick
	// At most: the blocked message, then one diff to the latest state.
	var got []string
	timeout := time.After(2 * time.Second)
	for {
		select {
		case m := <-stuck.msgs:
			got = append(got, summary(m))
			if got[len(got)-1] == "add 10.0.2.29:8080" {
				if len(got) > 4 {
					t.Fatalf("stale updates were not coalesced: %d messages %v", len(got), got)
				}
				return
			}
		case <-timeout:
			t.Fatalf("stuck stream never caught up: %v", got)
		}
	}
}

func TestTopicsAreShared(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	_, _, c1 := e.get(t, "web.emojivoto.svc.cluster.local:80")
	s2, _, c2 := e.get(t, "10.96.0.10:80") // same service through its cluster IP
	_ = s2.next(t)
	if n := e.x.endpoints.count(); n != 1 {
		t.Fatalf("topics = %d, want 1 shared topic", n)
	}
	c1()
	c2()
	deadline := time.Now().Add(2 * time.Second)
	for e.x.endpoints.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("topics leak after the streams ended: %d", e.x.endpoints.count())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An endpoint whose pod is deleted leaves the stream at once, and one whose
// pod is terminating as soon as another endpoint is ready, before the
// EndpointSlice controller updates the slice. (With no ready endpoint left,
// the terminating one is served while it drains: TestGetTerminatingFallback.)
func TestGetDropsEndpointsOfGonePods(t *testing.T) {
	e := newEnv(t, readFixture(t, "cluster.yaml"))
	s, _, _ := e.get(t, "web.emojivoto.svc.cluster.local:80")
	_ = s.next(t)
	p, err := e.client.CoreV1().Pods("emojivoto").Get(context.Background(), "web-7d4b9c-aaaaa", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if _, err := e.client.CoreV1().Pods("emojivoto").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := summary(s.next(t)), "remove 10.0.0.1:8080"; got != want {
		t.Fatalf("terminating pod: got %s, want %s", got, want)
	}
	if err := e.client.CoreV1().Pods("emojivoto").Delete(context.Background(), "web-7d4b9c-bbbbb", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// No ready endpoint is left: the terminating pod, which the slice still
	// says serves, is served while it drains.
	for _, want := range []string{"remove 10.0.0.2:8080", "add 10.0.0.1:8080/h2/web.emojivoto"} {
		if got := summary(s.next(t)); got != want {
			t.Fatalf("deleted pod: got %s, want %s", got, want)
		}
	}
	if err := e.client.CoreV1().Pods("emojivoto").Delete(context.Background(), "web-7d4b9c-aaaaa", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := summary(s.next(t)), "none exists=true"; got != want {
		t.Fatalf("deleted pods: got %s, want %s", got, want)
	}
}
