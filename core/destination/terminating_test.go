package destination

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGetTerminatingFallback: as kube-proxy does (KEP-1669), a target with
// no ready endpoint is served the endpoints that are terminating but still
// serving, instead of none; as long as one endpoint is ready, only the ready
// ones. The decision is made across all the slices of the served family, on
// the asked port.
func TestGetTerminatingFallback(t *testing.T) {
	e := newEnv(t, readFixture(t, "terminating.yaml"))
	tests := []struct {
		name, auth, want string
	}{
		{"the only pod drains: served", "solo.drain.svc.cluster.local:80", "add 10.2.0.1:8080"},
		{"through the cluster IP", "10.96.2.10:80", "add 10.2.0.1:8080"},
		{"pod deleted, slice not updated yet: draining, served", "lag.drain.svc.cluster.local:80", "add 10.2.1.1:8080"},
		{"a ready pod beside a draining one: the ready one only", "mixed.drain.svc.cluster.local:80", "add 10.2.2.1:8080"},
		{"ready and draining in two slices: decided across slices", "split.drain.svc.cluster.local:80", "add 10.2.3.1:8080"},
		{"terminating but not serving, serving unset, starting, finished pod: none", "stopping.drain.svc.cluster.local:80", "none exists=true"},
		{"Service without selector", "ext.drain.svc.cluster.local:5432", "add 192.168.9.1:15432"},
		{"per port: the port with a ready endpoint", "ports.drain.svc.cluster.local:80", "add 10.2.6.1:8080"},
		{"per port: the port with only a draining endpoint", "ports.drain.svc.cluster.local:9000", "add 10.2.6.2:9000"},
		{"dual-stack: once, in the primary family", "ds.drain.svc.cluster.local:80", "add 10.2.7.1:8080"},
		{"dual-stack: the IPv6 cluster IP, in IPv6", "[fd00:96::20]:80", "add [fd00:2:7::1]:8080"},
		{"dual-stack, IPv4 slice has a ready pod: ready only", "ds2.drain.svc.cluster.local:80", "add 10.2.8.2:8080"},
		{"dual-stack, IPv6 slice has only a draining pod: it", "[fd00:96::21]:80", "add [fd00:2:8::1]:8080"},
		{"headless: the ready pod only", "kv.drain.svc.cluster.local:6000", "add 10.2.9.2:6000"},
		{"headless: a draining pod's own name serves it", "kv-0.kv.drain.svc.cluster.local:6000", "add 10.2.9.1:6000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := e.get(t, tc.auth)
			if got := summary(s.next(t)); got != tc.want {
				t.Fatalf("snapshot of %s:\n got %s\nwant %s", tc.auth, got, tc.want)
			}
		})
	}
}

const drainService = `apiVersion: v1
kind: Service
metadata: {name: one, namespace: drain}
spec:
  clusterIP: 10.96.3.10
  clusterIPs: [10.96.3.10]
  selector: {app: one}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: one-old, namespace: drain, labels: {app: one}}
spec: {containers: [{name: app}]}
status: {phase: Running, podIP: 10.3.0.1, podIPs: [{ip: 10.3.0.1}]}
`

// drainSlice is the Service one's slice with the endpoints given as
// "ip pod ready serving terminating".
func drainSlice(eps ...string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: one-1, namespace: drain, labels: {kubernetes.io/service-name: one}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:`)
	if len(eps) == 0 {
		b.WriteString(" []")
	}
	for _, ep := range eps {
		f := strings.Fields(ep)
		fmt.Fprintf(&b, "\n- {addresses: [%s], conditions: {ready: %s, serving: %s, terminating: %s}, targetRef: {kind: Pod, name: %s, namespace: drain}}", f[0], f[2], f[3], f[4], f[1])
	}
	return b.String() + "\n"
}

// TestGetTerminatingRollout follows a one-replica Deployment whose pods
// drain (a preStop hook) through a rolling update and a scale to zero: the
// stream always has an endpoint that serves, and switches to the new pod as
// soon as it is ready.
func TestGetTerminatingRollout(t *testing.T) {
	e := newEnv(t, drainService, drainSlice("10.3.0.1 one-old true true false"))
	s, _, _ := e.get(t, "one.drain.svc.cluster.local:80")
	if got := summary(s.next(t)); got != "add 10.3.0.1:8080" {
		t.Fatalf("snapshot = %s", got)
	}
	deleting := func(name string) func(t *testing.T) {
		return func(t *testing.T) {
			p, err := e.client.CoreV1().Pods("drain").Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			now := metav1.Now()
			p.DeletionTimestamp = &now
			if _, err := e.client.CoreV1().Pods("drain").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	apply := func(docs ...string) func(t *testing.T) {
		return func(t *testing.T) { e.apply(t, strings.Join(docs, "---\n")) }
	}
	newPod := `apiVersion: v1
kind: Pod
metadata: {name: one-new, namespace: drain, labels: {app: one}}
spec: {containers: [{name: app}]}
status: {phase: Running, podIP: 10.3.0.2, podIPs: [{ip: 10.3.0.2}]}
`
	steps := []struct {
		name string
		do   func(t *testing.T)
		want []string // nil: no update
	}{
		{"the old pod is deleted, its preStop hook runs", deleting("one-old"), nil},
		{"the controller marks it terminating; the new pod starts", apply(newPod,
			drainSlice("10.3.0.1 one-old false true true", "10.3.0.2 one-new false false false")), nil},
		{"the new pod is ready: it replaces the draining one", apply(
			drainSlice("10.3.0.1 one-old false true true", "10.3.0.2 one-new true true false")),
			[]string{"remove 10.3.0.1:8080", "add 10.3.0.2:8080"}},
		{"the old pod stops serving", apply(
			drainSlice("10.3.0.1 one-old false false true", "10.3.0.2 one-new true true false")), nil},
		{"scale to zero: the last pod is deleted, still serves", deleting("one-new"), nil},
		{"the controller marks it terminating", apply(
			drainSlice("10.3.0.2 one-new false true true")), nil},
		{"it fails its readiness probe while it drains", apply(
			drainSlice("10.3.0.2 one-new false false true")), []string{"none exists=true"}},
		{"it is ready again (a flapping probe)", apply(
			drainSlice("10.3.0.2 one-new false true true")), []string{"add 10.3.0.2:8080"}},
		{"it is gone", func(t *testing.T) {
			if err := e.client.CoreV1().Pods("drain").Delete(context.Background(), "one-new", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"none exists=true"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			for _, want := range st.want {
				if got := summary(s.next(t)); got != want {
					t.Fatalf("got %s, want %s", got, want)
				}
			}
			s.none(t, 200*time.Millisecond)
		})
	}
}
