package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/core/injector"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// TestE2EHello installs the hello example extension in a real cluster
// (needs the image localhost/conduit/mesh-hello:dev there) and checks
// discovery, checks and its injector hook through pluginhost:
//
//	CONDUIT_E2E_KUBECONFIG=/var/tmp/conduit/cluster/admin.kubeconfig KUBECTL=/var/tmp/conduit/k8s/bin/kubectl \
//	  go test -run TestE2EHello ./pkg/pluginhost/
func TestE2EHello(t *testing.T) {
	kubeconfig, kubectl := os.Getenv("CONDUIT_E2E_KUBECONFIG"), os.Getenv("KUBECTL")
	if kubeconfig == "" || kubectl == "" {
		t.Skip("set CONDUIT_E2E_KUBECONFIG and KUBECTL to run against a cluster")
	}
	const ns = "conduit-hello-e2e"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	dir := plugins(t)
	p := launch(t, "hello", LaunchOptions{})
	kc := func(stdin []byte, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	// mesh hello install | kubectl apply -f -
	manifests, err := p.Install(ctx, sdk.InstallRequest{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	kc(manifests, "apply", "-f", "-")
	t.Cleanup(func() {
		out, err := p.Uninstall(context.Background(), sdk.InstallRequest{Namespace: ns})
		if err == nil {
			cmd := exec.Command(kubectl, "--kubeconfig", kubeconfig, "delete", "--wait=false", "--ignore-not-found", "-f", "-")
			cmd.Stdin = bytes.NewReader(out)
			_ = cmd.Run()
		}
	})
	pod := waitReady(ctx, t, cs, ns, "app.kubernetes.io/name=hello")

	exts, err := ClusterExtensions(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	var found *ClusterExtension
	for i := range exts {
		if exts[i].Namespace == ns {
			found = &exts[i]
		}
	}
	if found == nil || found.Name != "hello" || found.Version != "0.1.0" || found.InjectorHook != "hello."+ns+".svc:8089" {
		t.Fatalf("cluster extensions %+v", exts)
	}

	h := &Host{Finder: Finder{Dirs: []string{dir}}}
	cats, err := h.ExtensionChecks(ctx, cs, sdk.KubeFlags{Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	if c := findCategory(cats, "hello-extension"); c == nil || len(c.Checks) != 2 || c.Checks[0].Status != sdk.StatusOK || findCategory(cats, "hello") == nil {
		t.Errorf("checks with the plugin: %+v", cats)
	}
	h.Finder = Finder{Dirs: []string{t.TempDir()}} // the binary is gone
	cats, err = h.ExtensionChecks(ctx, cs, sdk.KubeFlags{Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	if c := findCategory(cats, "hello-extension"); c == nil || c.Checks[0].Status != sdk.StatusWarn || c.Checks[0].Hint != MissingPluginWarning("hello", ns) {
		t.Errorf("checks without the plugin: %+v", cats)
	}

	// The injector hook: its binary fetched through a port-forward to the
	// extension's pod, allowed (an allow-list in the test's namespace), run.
	local := portForward(ctx, t, cfg, ns, pod, 8089)
	conn, err := grpc.NewClient("passthrough:///"+local, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, sum, err := BinaryDigest(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, AllowListConfigMap(ns, AllowList{"hello": {SHA256: sum}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hooks := NewHooks(cs, HooksOptions{Namespace: ns, PluginDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), Timeout: 5 * time.Second, DialOptions: []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			if addr != found.InjectorHook {
				return nil, fmt.Errorf("no route to %s in this test", addr)
			}
			return (&net.Dialer{}).DialContext(ctx, "tcp", local)
		}),
	}})
	if err := hooks.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	defer hooks.Close()
	app := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{"hello.conduit.dev/greeting": "from e2e"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "conduit-proxy"}, {Name: "app"}}},
	}
	ops, err := InjectorContributor{Hooks: hooks}.Contribute(ctx, &injector.ContributionRequest{Pod: app, Patched: app, Namespace: "default", ProxyPath: "/spec/containers/0"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ops)
	if !strings.Contains(string(b), `{"op":"add","path":"/spec/containers/1/env","value":[{"name":"HELLO_GREETING","value":"from e2e"}]}`) {
		t.Errorf("hook patch %s", b)
	}
}

func findCategory(cats []sdk.CheckCategory, name string) *sdk.CheckCategory {
	for i := range cats {
		if cats[i].Name == name {
			return &cats[i]
		}
	}
	return nil
}

func waitReady(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, selector string) string {
	t.Helper()
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			for _, p := range pods.Items {
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						return p.Name
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no ready pod %s in %s: %v", selector, ns, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

func portForward(ctx context.Context, t *testing.T, cfg *rest.Config, ns, pod string, port int) string {
	t.Helper()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = filepath.Join(u.Path, "api/v1/namespaces", ns, "pods", pod, "portforward")
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, nil, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = fw.ForwardPorts() }()
	t.Cleanup(func() { close(stop) })
	select {
	case <-ready:
	case <-ctx.Done():
		t.Fatal("port-forward not ready")
	}
	ports, err := fw.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0].Local)
}
