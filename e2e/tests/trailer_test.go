//go:build e2e

package tests

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// forgedClientID is the identity a client forges in a request trailer.
const forgedClientID = "admin.kube-system.serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"

// TestForgedClientIDTrailerStripped: a conduit-client-id sent as a request
// trailer never reaches the meshed server's application, nor its
// announcement in the Trailer header, whether the client is meshed (its
// request crosses both proxies, HTTP/1 over HTTP/2 between them) or not
// (the server's proxy takes it as it came), over HTTP/1.1 (chunked) and
// HTTP/2 (h2c, trailing HEADERS). The application still sees the genuine
// conduit-client-id header, the client's identity or none, and the
// request's other trailer (X-Checksum): without it, a proxy dropping every
// trailer would pass. Before the fix (stop 32), the server's proxy stripped
// the header only: the echo listed Conduit-Client-Id among the trailers,
// with the forged value (checked on the cluster with the stripping
// disabled: all four cases fail so), which an application merging
// trailers into headers takes for the authenticated peer.
func TestForgedClientIDTrailerStripped(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	ns := meshedNamespace(t, f, "trailer")
	plain := f.NewNamespace(t, "trailer-plain", nil)
	image := f.Image("testapp")
	// The same echo on 8082, which proxy-init skips: the control below.
	server := withPodAnnotations(echoDeployment("server", image, []string{"-also-addrs", ":8082"}), "server",
		`config.conduit.dev/skip-inbound-ports: "8082"`)
	f.Apply(t, ns, manifests(server, httpService("server"), sleeperPod("client", image)))
	f.Apply(t, plain, sleeperPod("plain", image))
	pod := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	if !injected(&pod) {
		t.Fatalf("pod %s has no proxy", pod.Name)
	}
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)
	f.WaitPodsReady(t, plain, "app=plain", 1, 2*time.Minute)
	f.WaitEndpoints(t, ns, "server", 1, time.Minute)
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"

	forged := []string{"-T", "Conduit-Client-Id: " + forgedClientID, "-T", "X-Checksum: 5", "-H", "Conduit-Client-Id: " + forgedClientID}

	// Control: on a port proxy-init leaves alone nothing strips the
	// trailer, and the application reports it, as it would report it
	// through a proxy that let it pass. Without this, an echo that did
	// not report trailers would pass the checks below.
	t.Run("control: without the proxy the forged trailer reaches the application", func(t *testing.T) {
		out := f.Exec(t, plain, "plain", "plain", "testapp", "get", "-timeout", "5s", "-T", "Conduit-Client-Id: "+forgedClientID,
			"http://"+net.JoinHostPort(pod.Status.PodIP, "8082")+"/t")
		es := decodeEchoes(t, out)
		if len(es) != 1 {
			t.Fatalf("%d answers, want 1:\n%s", len(es), out)
		}
		if got := es[0].Trailers["Conduit-Client-Id"]; len(got) != 1 || got[0] != forgedClientID {
			t.Fatalf("the application saw trailers %v, want conduit-client-id %s: the echo does not show what a proxy would have to strip", es[0].Trailers, forgedClientID)
		}
	})

	for _, tc := range []struct {
		name, pod, ns, url string
		h2c                bool
		want               string // the conduit-client-id header the application must see ("": none)
	}{
		{"meshed client, HTTP/1.1", "client", ns, "http://server:8080/t", false, clientID},
		{"meshed client, h2c", "client", ns, "http://server:8080/t", true, clientID},
		{"unmeshed client, HTTP/1.1", "plain", plain, "http://server." + ns + ".svc.cluster.local:8080/t", false, ""},
		{"unmeshed client, h2c", "plain", plain, "http://server." + ns + ".svc.cluster.local:8080/t", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := append([]string{"testapp", "get", "-n", "3", "-timeout", "5s"}, forged...)
			proto := "HTTP/1.1"
			if tc.h2c {
				cmd, proto = append(cmd, "-h2c"), "HTTP/2.0"
			}
			out := f.Exec(t, tc.ns, tc.pod, tc.pod, append(cmd, tc.url)...)
			es := decodeEchoes(t, out)
			if len(es) != 3 {
				t.Fatalf("%d answers, want 3:\n%s", len(es), out)
			}
			for _, e := range es {
				if e.Pod != pod.Name || e.Method != http.MethodPost || e.BodyBytes != 5 {
					t.Fatalf("answered by %s: %s with %d bytes of body, want %s: POST with 5:\n%s", e.Pod, e.Method, e.BodyBytes, pod.Name, out)
				}
				if e.Proto != proto {
					t.Errorf("the application got the request over %s, want %s (the path under test)", e.Proto, proto)
				}
				if v, ok := e.Trailers["Conduit-Client-Id"]; ok {
					t.Errorf("the application saw the trailer conduit-client-id %q (announced or sent); want none: trailers %v", v, e.Trailers)
				}
				if got := e.Trailers["X-Checksum"]; len(got) != 1 || got[0] != "5" {
					t.Errorf("the application saw trailers %v, want X-Checksum: 5 (the request's trailers must cross the mesh, else this test proves nothing)", e.Trailers)
				}
				got := e.Headers["Conduit-Client-Id"]
				if tc.want == "" && len(got) != 0 || tc.want != "" && (len(got) != 1 || got[0] != tc.want) {
					t.Errorf("the application saw the header conduit-client-id %q, want %q", got, tc.want)
				}
			}
		})
	}
}
