//go:build e2e

package tests

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// ipv6Service is the manifest of an IPv6-only Service named name for the pods
// labelled app=server: port 8080 to their port named http. The e2e cluster is
// dual-stack, IPv4 first, so a Service is IPv4 unless it asks for IPv6.
func ipv6Service(name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %s}
spec:
  ipFamilyPolicy: SingleStack
  ipFamilies: [IPv6]
  selector: {app: server}
  ports: [{name: http, port: 8080, targetPort: http}]
`, name)
}

// podIPv6 returns the pod's IPv6 address, failing the test when it has none.
func podIPv6(t *testing.T, p corev1.Pod) string {
	t.Helper()
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is6() && !a.Is4In6() {
			return a.String()
		}
	}
	t.Fatalf("pod %s has no IPv6 address (%v): the e2e cluster is dual-stack (e2e/cluster/up.sh)", p.Name, p.Status.PodIPs)
	return ""
}

// TestDualStack: in a dual-stack cluster a meshed pod's IPv6 connections go
// through both proxies as its IPv4 ones do, so they are mTLS too: an IPv6
// Service (resolved by the destination service from its IPv6 cluster IP) and
// a pod's IPv6 address. Without proxy-init's IPv6 rules and the proxy's IPv6
// listeners, such a request would reach the server directly, in clear, and
// carry no conduit-client-id. A pod annotated config.conduit.dev/ipv6: "off"
// gets the mode in both proxy-init and its proxy, and only its IPv6
// connections bypass its proxy. An unmeshed client still reaches the meshed
// server over IPv6.
func TestDualStack(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	ns := meshedNamespace(t, f, "dual")
	plain := f.NewNamespace(t, "dual-plain", nil)
	image := f.Image("testapp")
	f.Apply(t, ns, manifests(echoDeployment("server", image, nil), ipv6Service("server6"), httpService("server"), sleeperPod("client", image),
		sleeperPod("client-v4", image, `config.conduit.dev/ipv6: "off"`)))
	f.Apply(t, plain, sleeperPod("plain", image))
	server := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	f.WaitPodsReady(t, ns, "app in (client, client-v4)", 2, 3*time.Minute)
	f.WaitPodsReady(t, plain, "app=plain", 1, 2*time.Minute)
	// client-v4's IPv6 traffic (its proxy serves IPv4 only) and plain's go
	// through kube-proxy's IPv6 rules.
	f.WaitEndpoints(t, ns, "server6", 1, time.Minute)
	serverV6 := podIPv6(t, server)
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"

	for _, tc := range []struct {
		name, url string
		outbound  []string // labels of the client proxy's outbound requests
	}{
		{"an IPv6 Service", "http://server6:8080/", []string{`authority="server6.` + ns + `.svc.cluster.local:8080"`, `tls="true"`}},
		{"an IPv6 pod address", "http://[" + serverV6 + "]:8080/", []string{`tls="true"`, `dst_pod="` + server.Name + `"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inbound := []string{`direction="inbound"`, `tls="true"`, `client_id="` + clientID + `"`}
			outbound := append([]string{`direction="outbound"`}, tc.outbound...)
			in0 := proxyCounter(t, f, ns, server.Name, "request_total", inbound...)
			out0 := proxyCounter(t, f, ns, "client", "request_total", outbound...)
			out, _, c := capturedMarker(t, func(marker string) string {
				return f.Exec(t, ns, "client", "client", "testapp", "get", "-n", "5", "-timeout", "5s", "-H", "X-E2e-Secret: "+marker, tc.url)
			})
			es := decodeEchoes(t, out)
			if len(es) != 5 {
				t.Fatalf("%d answers, want 5:\n%s", len(es), out)
			}
			for _, e := range es {
				if got := e.Headers["Conduit-Client-Id"]; len(got) != 1 || got[0] != clientID {
					t.Fatalf("%s saw conduit-client-id %v, want %s (mTLS between the proxies)", e.Pod, got, clientID)
				}
			}
			if c.Frames() == 0 {
				t.Fatal("the capture saw no frame at all: it proves nothing")
			}
			if c.Seen() != 0 {
				t.Errorf("the request crossed the pod network in clear (%d frames carried it)", c.Seen())
			}
			if in := proxyCounter(t, f, ns, server.Name, "request_total", inbound...); in < in0+5 {
				t.Errorf("server proxy: inbound mTLS requests from the client %v -> %v, want +5", in0, in)
			}
			if o := proxyCounter(t, f, ns, "client", "request_total", outbound...); o < out0+5 {
				t.Errorf("client proxy: outbound requests %s %v -> %v, want +5", strings.Join(tc.outbound, ","), out0, o)
			}
		})
	}

	// config.conduit.dev/ipv6: "off" reaches both proxy-init and the proxy:
	// the pod's IPv6 connections bypass its proxy (the server's proxy still
	// takes them, without a client identity), its IPv4 ones do not.
	t.Run("a pod that turns IPv6 off", func(t *testing.T) {
		ctx := framework.Context(t, time.Minute)
		p, err := f.Client.CoreV1().Pods(ns).Get(ctx, "client-v4", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var initArgs []string
		for _, c := range p.Spec.InitContainers {
			if c.Name == "conduit-init" {
				initArgs = c.Args
			}
			for _, e := range c.Env {
				if e.Name == "CONDUIT_PROXY_IPV6" && e.Value != "off" {
					t.Errorf("%s: CONDUIT_PROXY_IPV6=%s, want off", c.Name, e.Value)
				}
			}
		}
		if !slices.Contains(initArgs, "--ipv6=off") {
			t.Errorf("proxy-init args %v, want --ipv6=off", initArgs)
		}
		logs, err := f.Client.CoreV1().Pods(ns).GetLogs("client-v4", &corev1.PodLogOptions{Container: "conduit-init"}).Do(ctx).Raw()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(logs), "IPv6 nat rules skipped") {
			t.Errorf("proxy-init did not say it left IPv6 alone:\n%s", logs)
		}
		for _, tc := range []struct {
			url    string
			meshed bool
		}{{"http://server6:8080/", false}, {"http://server:8080/", true}} {
			out := f.Exec(t, ns, "client-v4", "client-v4", "testapp", "get", "-timeout", "5s", tc.url)
			es := decodeEchoes(t, out)
			if len(es) != 1 || es[0].Pod != server.Name {
				t.Fatalf("GET %s answered by %+v, want %s", tc.url, es, server.Name)
			}
			id := es[0].Headers["Conduit-Client-Id"]
			if tc.meshed && (len(id) != 1 || !strings.HasPrefix(id[0], "default."+ns+".")) {
				t.Errorf("GET %s over IPv4: conduit-client-id %v, want the client's identity", tc.url, id)
			}
			if !tc.meshed && len(id) != 0 {
				t.Errorf("GET %s over IPv6 with IPv6 off: conduit-client-id %v, want none (its proxy is bypassed)", tc.url, id)
			}
		}
	})

	t.Run("an unmeshed client reaches the meshed server over IPv6", func(t *testing.T) {
		out := f.Exec(t, plain, "plain", "plain", "testapp", "get", "-timeout", "5s", "http://server6."+ns+".svc.cluster.local:8080/")
		es := decodeEchoes(t, out)
		if len(es) != 1 || es[0].Pod != server.Name {
			t.Fatalf("answered by %+v, want %s", es, server.Name)
		}
		if got := es[0].Headers["Conduit-Client-Id"]; len(got) != 0 {
			t.Errorf("an unmeshed client got conduit-client-id %v", got)
		}
	})
}
