//go:build e2e

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
)

// opaqueApps is a meshed server-speaks-first echo (it greets each connection
// before reading, as MySQL does) on 3306, one of the default opaque ports, and
// on 7000, which the Service "banner" marks opaque with its annotation (and
// the Service "unmarked" does not, and "banner-named" does by the port's name,
// beside an invalid item); a second one, "named", on 7200, which its
// pod marks opaque by the port's name; and a meshed client.
func opaqueApps(image string) string {
	named := withPodAnnotations(echoDeployment("named", image, []string{"-banner-addrs", ":7200"}, "greeting:7200"),
		"named", "config.conduit.dev/opaque-ports: greeting")
	return manifests(
		echoDeployment("db", image, []string{"-banner-addrs", ":3306,:7000"}, "mysql:3306", "banner:7000"),
		named,
		`apiVersion: v1
kind: Service
metadata: {name: mysql}
spec:
  selector: {app: db}
  ports: [{name: mysql, port: 3306, targetPort: mysql}]
`, `apiVersion: v1
kind: Service
metadata:
  name: banner
  annotations: {config.conduit.dev/opaque-ports: "7000"}
spec:
  selector: {app: db}
  ports: [{name: banner, port: 7000, targetPort: banner}]
`, `apiVersion: v1
kind: Service
metadata:
  name: banner-named
  annotations: {config.conduit.dev/opaque-ports: "banner, nope"}
spec:
  selector: {app: db}
  ports: [{name: banner, port: 7000, targetPort: banner}]
`, `apiVersion: v1
kind: Service
metadata: {name: unmarked}
spec:
  selector: {app: db}
  ports: [{name: banner, port: 7000, targetPort: banner}]
`, `apiVersion: v1
kind: Service
metadata: {name: named}
spec:
  selector: {app: named}
  ports: [{name: greeting, port: 7200, targetPort: greeting}]
`,
		sleeperPod("client", image))
}

// opaqueNamespaceApps is the server-speaks-first echo "nsdb" on 7100, which
// its namespace marks opaque (opaqueNamespacePorts), and its Service.
func opaqueNamespaceApps(image string) string {
	return manifests(
		echoDeployment("nsdb", image, []string{"-banner-addrs", ":7100", "-tcp-addr", ":9000"}, "nsbanner:7100", "echo:9000"),
		`apiVersion: v1
kind: Service
metadata: {name: nsmarked}
spec:
  selector: {app: nsdb}
  ports: [{name: nsbanner, port: 7100, targetPort: nsbanner}]
`, `apiVersion: v1
kind: Service
metadata: {name: nsskipped}
spec:
  selector: {app: nsdb}
  ports: [{name: echo, port: 9000, targetPort: echo}]
`)
}

// skipNamespacePorts is the config.conduit.dev/skip-inbound-ports of nsdb's
// namespace: its TCP echo on 9000 is reached without its proxy, so the client
// proxies must not open mTLS to it, and the destination service, which reads
// pods, must learn that from the pod.
const skipNamespacePorts = "9000,"

// opaqueNamespacePorts is the config.conduit.dev/opaque-ports of nsdb's
// namespace, written loosely as people do (space, a trailing comma). The
// injector accepts it, so the proxy must too; and the destination service,
// which reads pods and Services, not namespaces, must learn it from the pod,
// or the client's proxy would wait for the client to speak first on 7100.
const opaqueNamespacePorts = "3306, 7100,"

// greetWithin is how soon a server's greeting must reach the client: well
// under the 10 s that a proxy waits for the client's first bytes on a port
// that is not opaque, with room for a loaded CI machine.
const greetWithin = "3s"

// TestOpaquePortsThroughTheMesh: server-speaks-first protocols do not stall
// in the mesh. Ports marked opaque (by default, by a Service's, a
// namespace's or a pod's config.conduit.dev/opaque-ports, the pod's by the
// port's name) skip protocol detection, so a server's
// greeting reaches a meshed client at once, where detection would wait for
// the client to speak first (up to 10 s); between meshed pods the bytes are
// carried over mTLS (the server's proxy counts the connections with the
// client's identity, and none of their bytes crosses the pod network in
// clear); an unmeshed client is greeted too, after the server's proxy has
// briefly looked for a ClientHello.
func TestOpaquePortsThroughTheMesh(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	ns := meshedNamespace(t, f, "opaque")
	nsOpaque := meshedNamespace(t, f, "opaque-ns")
	f.KubectlCmd(t, "", "annotate", "namespace", nsOpaque, "config.conduit.dev/opaque-ports="+opaqueNamespacePorts,
		"config.conduit.dev/skip-inbound-ports="+skipNamespacePorts)
	plain := f.NewNamespace(t, "opaque-plain", nil)
	f.Apply(t, ns, opaqueApps(f.Image("testapp")))
	f.Apply(t, nsOpaque, opaqueNamespaceApps(f.Image("testapp")))
	f.Apply(t, plain, sleeperPod("plain", f.Image("testapp")))
	server := f.WaitPodsReady(t, ns, "app=db", 1, 3*time.Minute)[0]
	named := f.WaitPodsReady(t, ns, "app=named", 1, 3*time.Minute)[0]
	nsdb := f.WaitPodsReady(t, nsOpaque, "app=nsdb", 1, 3*time.Minute)[0]
	f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)
	for _, p := range []corev1.Pod{server, named, nsdb} {
		if !injected(&p) {
			t.Fatalf("pod %s has no proxy", p.Name)
		}
	}
	if got := nsdb.Annotations["config.conduit.dev/opaque-ports"]; got != strings.TrimSpace(opaqueNamespacePorts) {
		t.Errorf("pod %s has opaque-ports %q, want its namespace's %q", nsdb.Name, got, opaqueNamespacePorts)
	}
	if got := nsdb.Annotations["config.conduit.dev/skip-inbound-ports"]; got != skipNamespacePorts {
		t.Errorf("pod %s has skip-inbound-ports %q, want its namespace's %q", nsdb.Name, got, skipNamespacePorts)
	}
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	mtlsOpens := func(server corev1.Pod) float64 {
		return proxyCounter(t, f, server.Namespace, server.Name, "tcp_open_total",
			`direction="inbound"`, `tls="true"`, `client_id="`+clientID+`"`)
	}

	for _, tc := range []struct {
		name, addr string
		server     corev1.Pod
	}{
		{"a default opaque port (3306)", "mysql:3306", server},
		{"a port the Service marks opaque (7000)", "banner:7000", server},
		{"a port its namespace marks opaque (7100)", "nsmarked." + nsOpaque + ":7100", nsdb},
		{"a port its pod marks opaque by name (7200)", "named:7200", named},
	} {
		t.Run("the server speaks first on "+tc.name, func(t *testing.T) {
			server := tc.server
			before := mtlsOpens(server)
			msg := "hello-" + strings.Split(tc.addr, ":")[1]
			// A new Service: until the client's proxy has its profile
			// (waited for up to the discovery timeout) the greeting may
			// be late; once it has, every connection must be greeted
			// within greetWithin.
			greeted := func(out string) {
				t.Helper()
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 2 || !strings.HasPrefix(lines[0], server.Name+" banner for ") || !strings.HasPrefix(lines[1], server.Name+" "+msg+" from ") {
					t.Fatalf("testapp tcp printed %q, want the greeting and the echo of %q from %s", out, msg, server.Name)
				}
			}
			f.WaitFor(t, "a greeting within "+greetWithin+" through both proxies", 2*time.Minute, func(ctx context.Context) (bool, error) {
				o, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "tcp", "-banner", greetWithin, tc.addr, msg)
				if err != nil {
					return false, fmt.Errorf("testapp tcp: %w: %s %s", err, o, stderr)
				}
				greeted(o)
				return true, nil
			})
			// Five more connections, each greeted at once.
			for range 5 {
				greeted(f.Exec(t, ns, "client", "client", "testapp", "tcp", "-banner", greetWithin, tc.addr, msg))
			}
			// The server's proxy accepted them over mTLS from the client's identity.
			if n := mtlsOpens(server) - before; n < 6 {
				t.Errorf("the server's proxy counts %v new mTLS connections from %s, want at least 6", n, clientID)
			}
		})
	}

	t.Run("a port its namespace skips (9000) is reached without mTLS", func(t *testing.T) {
		// The echo on 9000 bypasses nsdb's proxy (proxy-init skips it), so
		// it sees the client pod's own address. Had the client's proxy been
		// told the endpoint's identity, it would open mTLS to an
		// application that does not speak it, and get no echo.
		client := f.WaitPodsReady(t, ns, "app=client", 1, time.Minute)[0]
		want := nsdb.Name + " skipped from " + client.Status.PodIP
		f.WaitFor(t, "an echo from nsdb:9000 past its proxy", 2*time.Minute, func(ctx context.Context) (bool, error) {
			o, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "tcp", "nsskipped."+nsOpaque+":9000", "skipped")
			if err != nil {
				return false, fmt.Errorf("testapp tcp: %w: %s %s", err, o, stderr)
			}
			if strings.TrimSpace(o) != want {
				return false, fmt.Errorf("testapp tcp printed %q, want %q", o, want)
			}
			return true, nil
		})
		for range 3 {
			if o := f.Exec(t, ns, "client", "client", "testapp", "tcp", "nsskipped."+nsOpaque+":9000", "skipped"); strings.TrimSpace(o) != want {
				t.Fatalf("testapp tcp printed %q, want %q", o, want)
			}
		}
		out := f.MeshCmd(t, "diagnostics", "endpoints", "nsskipped."+nsOpaque+".svc.cluster.local:9000", "-o", "json")
		var got struct {
			Endpoints []struct{ Pod, Identity string } `json:"endpoints"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Endpoints) != 1 {
			t.Fatalf("mesh diagnostics endpoints -o json: %v, want one endpoint:\n%s", err, out)
		}
		if id := got.Endpoints[0].Identity; id != "" {
			t.Errorf("the endpoint of a skipped port has identity %q, want none (no mTLS to it)", id)
		}
	})

	t.Run("mesh diagnostics profile shows which ports the client proxies treat as opaque", func(t *testing.T) {
		for _, tc := range []struct {
			authority string
			opaque    bool
		}{
			{"mysql." + ns + ".svc.cluster.local:3306", true},
			{"banner." + ns + ".svc.cluster.local:7000", true},
			{"nsmarked." + nsOpaque + ".svc.cluster.local:7100", true},
			{"named." + ns + ".svc.cluster.local:7200", true},
			{"banner-named." + ns + ".svc.cluster.local:7000", true},
			{"unmarked." + ns + ".svc.cluster.local:7000", false},
		} {
			var got struct {
				Authority string
				Opaque    bool
				Profile   struct{ FullyQualifiedName string }
			}
			out := f.MeshCmd(t, "diagnostics", "profile", tc.authority, "-o", "json")
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("mesh diagnostics profile %s -o json: %v\n%s", tc.authority, err, out)
			}
			if got.Opaque != tc.opaque || got.Profile.FullyQualifiedName != strings.Split(tc.authority, ":")[0] {
				t.Errorf("mesh diagnostics profile %s: opaque %v, service %q; want opaque %v\n%s", tc.authority, got.Opaque, got.Profile.FullyQualifiedName, tc.opaque, out)
			}
		}
		// No webhook checks a Service: its invalid item is reported on it.
		f.WaitFor(t, "a Warning Event InvalidOpaquePorts on Service banner-named", time.Minute, func(ctx context.Context) (bool, error) {
			evs, err := f.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=banner-named,reason=InvalidOpaquePorts"})
			if err != nil || len(evs.Items) == 0 {
				return false, err
			}
			if m := evs.Items[0].Message; !strings.Contains(m, `"nope" is not a port`) || strings.Contains(m, `"banner" is not`) {
				return false, fmt.Errorf("event message %q", m)
			}
			return true, nil
		})
		table := f.MeshCmd(t, "diagnostics", "profile", "nsmarked."+nsOpaque+".svc.cluster.local:7100")
		if !regexp.MustCompile(`(?m)^OPAQUE\s+yes`).MatchString(table) {
			t.Errorf("mesh diagnostics profile (table) does not say the port is opaque:\n%s", table)
		}
	})

	t.Run("a Service without endpoints resets the connection", func(t *testing.T) {
		// As HTTP gets a 503: the client's proxy resets the connection,
		// rather than send it in clear to the Service's IP (whose rules
		// may reach a pod the destination service has not streamed yet).
		// Before, the client read an end of file, as from a server that
		// closed at once.
		f.Apply(t, ns, `apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports: [{name: mysql, port: 3306, targetPort: 3306}]
`)
		f.WaitFor(t, "a reset from the client's proxy", time.Minute, func(ctx context.Context) (bool, error) {
			out, stderr, err := f.ExecE(ctx, ns, "client", "client", nil, "testapp", "tcp", "nobody:3306", "hello")
			if err == nil || !strings.Contains(stderr, "connection reset by peer") {
				return false, fmt.Errorf("testapp tcp: %v: %s %s", err, out, stderr)
			}
			return true, nil
		})
	})

	t.Run("a target that refuses the connection resets it", func(t *testing.T) {
		// An unmeshed pod with nothing on 3306: the client's proxy is
		// refused, and resets the client's connection, as the client's own
		// connect would have been refused. Before, it read an end of file.
		p := f.WaitPodsReady(t, plain, "app=plain", 1, 3*time.Minute)[0]
		out, stderr, err := f.ExecE(context.Background(), ns, "client", "client", nil, "testapp", "tcp", net.JoinHostPort(p.Status.PodIP, "3306"), "hello")
		if err == nil || !strings.Contains(stderr, "connection reset by peer") {
			t.Errorf("testapp tcp to a port nothing listens on: %v: %s %s; want a reset", err, out, stderr)
		}
	})

	t.Run("control: a port not marked opaque waits for the client to speak", func(t *testing.T) {
		// The same server port through a Service without the annotation:
		// the client's proxy detects the protocol from the client's first
		// bytes, which a server-speaks-first client never sends first.
		// Without this, the greetings above would prove nothing.
		out, stderr, err := f.ExecE(context.Background(), ns, "client", "client", nil, "testapp", "tcp", "-banner", greetWithin, "unmarked:7000", "hello")
		if err == nil || !strings.Contains(out+stderr, "no banner") {
			t.Fatalf("want no greeting within %s through a port that is not opaque, got %v: %s %s", greetWithin, err, out, stderr)
		}
	})

	t.Run("opaque bytes cross the pod network only inside mTLS", func(t *testing.T) {
		// Control: an unmeshed client is greeted too (the server's proxy
		// waits at most 200 ms for a meshed client's ClientHello on an
		// opaque port, then relays the connection as it is), and its bytes
		// cross in clear, so the capture does see them.
		out, _, c := capturedMarker(t, func(marker string) string {
			out := f.Exec(t, plain, "plain", "plain", "testapp", "tcp", "-banner", greetWithin, server.Status.PodIP+":3306", marker)
			if !strings.HasPrefix(out, server.Name+" banner for ") || !strings.Contains(out, server.Name+" "+marker+" from ") {
				t.Fatalf("unmeshed client: testapp tcp printed %q", out)
			}
			return out
		})
		if c.Seen() == 0 {
			t.Fatalf("the capture did not see an unmeshed client's bytes (%d frames captured): %q", c.Frames(), out)
		}
		// Meshed client to meshed server: only mTLS records on the wire.
		out, marker, c := capturedMarker(t, func(m string) string {
			return f.Exec(t, ns, "client", "client", "testapp", "tcp", "-banner", greetWithin, "banner:7000", m)
		})
		if !strings.Contains(out, marker) {
			t.Fatalf("the server did not echo the marker: %q", out)
		}
		if c.Seen() != 0 {
			t.Errorf("opaque bytes crossed the pod network in clear: %d of %d frames carried the marker", c.Seen(), c.Frames())
		}
		t.Logf("%d frames captured, none with the marker in clear", c.Frames())
	})
}
