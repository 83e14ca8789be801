package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// DefaultKubeconfig is where `make cluster-up` writes the admin kubeconfig.
const DefaultKubeconfig = "/var/tmp/conduit/cluster/admin.kubeconfig"

// Framework holds the clients and settings shared by every test of a test binary.
type Framework struct {
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	Dynamic    dynamic.Interface
	Mapper     *restmapper.DeferredDiscoveryRESTMapper

	Mesh      string // path of the built CLI (bin/mesh)
	Kubectl   string // path of kubectl
	Registry  string // image registry of the project's images (localhost/conduit)
	Tag       string // their tag (dev)
	Artifacts string // root of the failure artifacts (e2e/artifacts)
	RunID     string // identifies one `make e2e` (E2E_RUN_ID); test packages of a run share the mesh

	mu    sync.Mutex
	tests map[string]*testState // by test name
}

var (
	global     *Framework
	globalErr  error
	globalOnce sync.Once
)

// repoRoot is the repository root, found from this source file.
func repoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// load builds the Framework from the environment and checks that the API server answers.
func load() (*Framework, error) {
	root := repoRoot()
	f := &Framework{
		Kubeconfig: env("KUBECONFIG", DefaultKubeconfig),
		Mesh:       env("E2E_MESH", filepath.Join(root, "bin", "mesh")),
		Kubectl:    env("E2E_KUBECTL", "/var/tmp/conduit/k8s/bin/kubectl"),
		Registry:   env("E2E_REGISTRY", "localhost/conduit"),
		Tag:        env("E2E_TAG", "dev"),
		Artifacts:  env("E2E_ARTIFACTS", filepath.Join(root, "e2e", "artifacts")),
		RunID:      env("E2E_RUN_ID", fmt.Sprintf("pid-%d-%d", os.Getpid(), time.Now().UnixNano())),
		tests:      map[string]*testState{},
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", f.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("e2e: kubeconfig %s (run 'make cluster-up'): %w", f.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	f.Config = cfg
	if f.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("e2e: client: %w", err)
	}
	if f.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("e2e: dynamic client: %w", err)
	}
	f.Mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(f.Client.Discovery()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return nil, fmt.Errorf("e2e: the API server behind %s is not ready (run 'make cluster-up'): %w", f.Kubeconfig, err)
	}
	return f, nil
}

// New returns the shared Framework, failing the test if the cluster cannot be reached.
func New(t testing.TB) *Framework {
	t.Helper()
	globalOnce.Do(func() { global, globalErr = load() })
	if globalErr != nil {
		t.Fatal(globalErr)
	}
	return global
}

// Image is the reference of one of the project's images (images.yaml), e.g. Image("testapp").
func (f *Framework) Image(name string) string {
	return f.Registry + "/" + name + ":" + f.Tag
}

// Context is a context cancelled when the test ends, with a deadline.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}
