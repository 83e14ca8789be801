package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The hooks' tests run real plugins: this test binary, handed out by a
// Distribution server (sdk.ServeHooksListener) and started by Hooks as
// mesh-<name>, serves testExtension(name) (see TestMain).

// testExtension returns the test extension called name.
func testExtension(name string) sdk.Extension {
	switch name {
	case "a":
		return &hookExt{name: name, patch: annotate("a.dev/on", "")}
	case "b":
		// b sees a's patch, since it is called with the pod a patched.
		return &hookExt{name: name, patch: func(req *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
			var pod corev1.Pod
			if err := json.Unmarshal(req.Pod, &pod); err != nil {
				return nil, err
			}
			if _, ok := pod.Annotations["a.dev/on"]; !ok || req.ProxyPath != "/spec/initContainers/1" || req.Namespace != "web" {
				return nil, errors.New("b did not get a's patch, the proxy path or the namespace")
			}
			return annotate("b.dev/saw-a", "true")(req)
		}}
	case "c-failing":
		return &hookExt{name: name, patch: func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) { return nil, errors.New("boom") }}
	case "d-bad":
		return &hookExt{name: name, patch: func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
			return []sdk.PatchOp{{Op: "remove", Path: "/metadata/labels/missing"}}, nil
		}}
	case "e-slow":
		return &hookExt{name: name, patch: func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
			time.Sleep(500 * time.Millisecond)
			return annotate("e.dev/late", "x")(nil)
		}}
	case "x":
		return &hookExt{name: name, md: map[string]string{"zone": "x-zone", "team": "x"}}
	case "y":
		return &hookExt{name: name, md: map[string]string{"team": "y", "tier": "gold"}}
	case "z":
		return &hookExt{name: name, fail: true}
	case "flaky":
		e := &hookExt{name: name}
		e.patch = func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
			if e.calls.Load() == 1 {
				return nil, status.Error(codes.Unavailable, "warming up")
			}
			return []sdk.PatchOp{{Op: "add", Path: "/metadata/annotations/flaky.dev~1ok", Value: "yes"}}, nil
		}
		return e
	case "crashy":
		// Dies on its first call; a restarted one answers.
		return &hookExt{name: name, patch: func(req *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
			if _, err := os.Stat(os.Getenv("HOME") + "/crashed"); err != nil {
				_ = os.WriteFile(os.Getenv("HOME")+"/crashed", nil, 0o600)
				os.Exit(3)
			}
			return annotate("crashy.dev/back", "yes")(req)
		}}
	case "tap":
		return &hookExt{name: name, patch: tapLike}
	}
	return &hookExt{name: name, patch: func(*sdk.PodPatchRequest) ([]sdk.PatchOp, error) { return nil, nil }}
}

var (
	selfOnce sync.Once
	selfSum  string
)

// selfDigest is the SHA-256 of this test binary: the digest of every test
// extension's hook binary.
func selfDigest(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs plugin subprocesses")
	}
	selfOnce.Do(func() {
		p, err := os.Executable()
		if err != nil {
			return
		}
		f, err := os.Open(p)
		if err != nil {
			return
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil {
			selfSum = hex.EncodeToString(h.Sum(nil))
		}
	})
	if selfSum == "" {
		t.Fatal("cannot hash the test binary")
	}
	return selfSum
}

// distribute serves the Distribution of the test extension name (this
// binary) on a loopback port and returns its address.
func distribute(t testing.TB, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sdk.ServeHooksListener(ctx, lis, testExtension(name)) }()
	t.Cleanup(func() { cancel(); <-done })
	return lis.Addr().String()
}

// testControlPlane is the control plane's namespace in the hooks' tests.
const testControlPlane = "conduit"

// allowConfigMap is the allow-list naming each extension with digest.
func allowConfigMap(digest string, exts ...string) *corev1.ConfigMap {
	al := AllowList{}
	for _, e := range exts {
		al[e] = AllowEntry{SHA256: digest}
	}
	return AllowListConfigMap(testControlPlane, al)
}

// newTestHooks returns hooks over cs that run plugins from a temporary
// directory, stopped at the end of the test.
func newTestHooks(t *testing.T, cs *fake.Clientset, opts HooksOptions) *Hooks {
	t.Helper()
	opts.Namespace = testControlPlane
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.PluginDir == "" {
		opts.PluginDir = t.TempDir()
	}
	h := NewHooks(cs, opts)
	t.Cleanup(h.Close)
	return h
}

// tWriter writes to the test's log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// setAllowList writes the allow-list ConfigMap.
func setAllowList(t *testing.T, cs *fake.Clientset, cm *corev1.ConfigMap) {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		if _, err := cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}
