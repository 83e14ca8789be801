//go:build e2e

package tests

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// proxyInitPods: "redirected" runs proxy-init as the injector configures it,
// with echo servers standing in for the proxy (UID 2102) on the inbound
// (4143, both families) and outbound (4140, at 127.0.0.1 and at ::1, where
// ip6tables redirects) ports, and the application (UID 1000) on 8081, a
// skipped port. "peer" serves on 8080 and 8081 from another pod. The cluster
// is dual-stack: both pods have an address of each family.
const proxyInitPods = `
apiVersion: v1
kind: Pod
metadata: {name: redirected, labels: {app: redirected}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: conduit-init
    image: %[2]s
    imagePullPolicy: IfNotPresent
    args: ["--inbound-ports-to-ignore=4191,4190,8081", "--outbound-ports-to-ignore=8081", "--log-format=text"]
    securityContext:
      runAsUser: 0
      runAsNonRoot: false
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {add: [NET_ADMIN, NET_RAW], drop: [ALL]}
    volumeMounts: [{name: xtables, mountPath: /run}]
  containers:
  - {name: app, image: %[1]s, imagePullPolicy: IfNotPresent, args: [serve, -addr, ":8081"],
     env: [{name: POD_NAME, value: app}], securityContext: {runAsUser: 1000, runAsNonRoot: true, readOnlyRootFilesystem: true}}
  - {name: inbound, image: %[1]s, imagePullPolicy: IfNotPresent, args: [serve, -addr, ":4143"],
     env: [{name: POD_NAME, value: via-inbound}], securityContext: {runAsUser: 2102, runAsNonRoot: true, readOnlyRootFilesystem: true}}
  - {name: outbound, image: %[1]s, imagePullPolicy: IfNotPresent, args: [serve, -addr, "127.0.0.1:4140"],
     env: [{name: POD_NAME, value: via-outbound}], securityContext: {runAsUser: 2102, runAsNonRoot: true, readOnlyRootFilesystem: true}}
  - {name: outbound6, image: %[1]s, imagePullPolicy: IfNotPresent, args: [serve, -addr, "[::1]:4140"],
     env: [{name: POD_NAME, value: via-outbound6}], securityContext: {runAsUser: 2102, runAsNonRoot: true, readOnlyRootFilesystem: true}}
  volumes: [{name: xtables, emptyDir: {medium: Memory}}]
---
apiVersion: v1
kind: Pod
metadata: {name: peer, labels: {app: peer}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: p8080, image: %[1]s, imagePullPolicy: IfNotPresent, args: [serve, -addr, ":8080"], env: [{name: POD_NAME, value: peer-8080}]}
  - {name: p8081, image: %[1]s, imagePullPolicy: IfNotPresent, args: [serve, -addr, ":8081"], env: [{name: POD_NAME, value: peer-8081}]}
`

// TestProxyInit checks the nat rules proxy-init installs in a real pod:
// which connections reach the proxy's inbound and outbound ports and which
// bypass it.
func TestProxyInit(t *testing.T) {
	f := framework.New(t)
	ns := f.NewNamespace(t, "proxy-init", nil)
	f.Apply(t, ns, fmt.Sprintf(proxyInitPods, f.Image("testapp"), f.Image("proxy-init")))
	f.WaitPodsReady(t, ns, "app in (redirected, peer)", 2, 2*time.Minute)
	ctx := framework.Context(t, time.Minute)
	ip := func(name string) string {
		p, err := f.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Status.PodIP
	}
	self, peer := ip("redirected"), ip("peer")
	ip6 := func(name string) string {
		p, err := f.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return "[" + podIPv6(t, *p) + "]"
	}
	self6, peer6 := ip6("redirected"), ip6("peer")

	// proxy-init logged the rules it installed.
	logs, err := f.Client.CoreV1().Pods(ns).GetLogs("redirected", &corev1.PodLogOptions{Container: "conduit-init"}).Do(ctx).Raw()
	if err != nil {
		t.Fatal(err)
	}
	for _, family := range []string{"IPv4", "IPv6"} {
		installed := regexp.MustCompile(`msg="nat rules installed" .*family=` + family + ` .*CONDUIT_OUTBOUND`)
		if !installed.Match(logs) {
			t.Errorf("proxy-init did not log its %s rules:\n%s", family, logs)
		}
	}

	for _, tc := range []struct {
		name, pod, container, url, want string
	}{
		{"inbound is redirected to 4143", "peer", "p8080", "http://" + self + ":8080/", "via-inbound"},
		{"inbound to any port is redirected", "peer", "p8080", "http://" + self + ":12345/", "via-inbound"},
		{"skipped inbound port bypasses", "peer", "p8080", "http://" + self + ":8081/", "app"},
		{"outbound is redirected to 4140", "redirected", "app", "http://" + peer + ":8080/", "via-outbound"},
		{"skipped outbound port bypasses", "redirected", "app", "http://" + peer + ":8081/", "peer-8081"},
		{"the proxy's own traffic bypasses", "redirected", "inbound", "http://" + peer + ":8080/", "peer-8080"},
		{"loopback bypasses", "redirected", "app", "http://127.0.0.1:8081/", "app"},
		{"own pod IP goes through inbound", "redirected", "app", "http://" + self + ":8080/", "via-inbound"},
		{"own pod IP, skipped port, bypasses", "redirected", "app", "http://" + self + ":8081/", "app"},
		// The same over IPv6: ip6tables, not only iptables.
		{"IPv6 inbound is redirected to 4143", "peer", "p8080", "http://" + self6 + ":8080/", "via-inbound"},
		{"IPv6 skipped inbound port bypasses", "peer", "p8080", "http://" + self6 + ":8081/", "app"},
		{"IPv6 outbound is redirected to [::1]:4140", "redirected", "app", "http://" + peer6 + ":8080/", "via-outbound6"},
		{"IPv6 skipped outbound port bypasses", "redirected", "app", "http://" + peer6 + ":8081/", "peer-8081"},
		{"the proxy's own IPv6 traffic bypasses", "redirected", "inbound", "http://" + peer6 + ":8080/", "peer-8080"},
		{"IPv6 loopback bypasses", "redirected", "app", "http://[::1]:8081/", "app"},
		{"own IPv6 pod IP goes through inbound", "redirected", "app", "http://" + self6 + ":8080/", "via-inbound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := f.Exec(t, ns, tc.pod, tc.container, "testapp", "get", "-timeout", "5s", tc.url)
			es := decodeEchoes(t, out)
			if len(es) != 1 || es[0].Pod != tc.want {
				t.Errorf("GET %s from %s/%s answered by %+v, want %s", tc.url, tc.pod, tc.container, es, tc.want)
			}
		})
	}
}
