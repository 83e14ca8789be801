package pluginhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	// Launched by Hooks as mesh-<name>: serve the test extension <name>
	// (testplugin_test.go).
	if sdk.LaunchedAsPlugin() {
		sdk.Serve(testExtension(strings.TrimPrefix(filepath.Base(os.Args[0]), BinaryPrefix)))
		return
	}
	if path := os.Getenv(envOrphanHost); path != "" {
		orphanHost(path) // orphan_linux_test.go
		return
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// envOrphanHost makes the test binary a host that launches the plugin at
// the variable's path, prints the plugin's pid and waits to be killed
// (TestNoOrphanWhenHostKilled).
const envOrphanHost = "PLUGINHOST_TEST_ORPHAN_HOST"

// orphanHost is that host.
func orphanHost(path string) {
	p, err := Launch(context.Background(), path, LaunchOptions{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(p.gp.ReattachConfig().Pid)
	select {}
}

// plugins builds the example and test plugins once, as mesh-hello,
// mesh-future and mesh-crasher, and returns their directory.
func plugins(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds plugin binaries")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "pluginhost-test-")
		if buildErr != nil {
			return
		}
		for name, pkg := range map[string]string{
			"hello":   "github.com/conduit-mesh/conduit/plugin-sdk/examples/hello",
			"future":  "./testdata/future",
			"crasher": "./testdata/crasher",
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, BinaryPrefix+name), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// recorder is a slog handler that keeps records.
type recorder struct {
	mu   sync.Mutex
	recs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	r.recs = append(r.recs, s)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }
func (r *recorder) contains(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.recs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func launch(t *testing.T, name string, opts LaunchOptions) *Plugin {
	t.Helper()
	p, err := Launch(context.Background(), filepath.Join(plugins(t), BinaryPrefix+name), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestHelloOverGoPlugin(t *testing.T) {
	rec := &recorder{}
	p := launch(t, "hello", LaunchOptions{Logger: slog.New(rec), HostVersion: "test"})
	if p.Info.Name != "hello" || p.Info.Version != "0.1.0" || p.Info.SDKVersion != sdk.Version {
		t.Errorf("info %+v", p.Info)
	}
	want := []client.Capability{client.Commands, client.Install, client.Checks, client.InjectorHook}
	if fmt.Sprint(p.Info.Capabilities) != fmt.Sprint(want) {
		t.Errorf("capabilities %v, want %v", p.Info.Capabilities, want)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		args           []string
		stdin          string
		code           int
		stdout, stderr string
	}{
		{args: []string{"greet", "--shout", "Ada"}, code: 0, stdout: "Hello, Ada! (namespace web)\n"},
		{args: []string{"exit", "5"}, code: 5, stderr: "exiting with 5\n"},
		{args: []string{"echo"}, stdin: "line 1\nline 2\n", stdout: "line 1\nline 2\n"},
		{args: []string{"nope"}, code: 1, stderr: "Error: mesh hello: unknown command \"nope\" (commands: greet, echo, exit; see 'mesh hello --help')\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code, err := p.Run(ctx, tc.args, sdk.KubeFlags{Namespace: "web"}, client.Stdio{In: strings.NewReader(tc.stdin), Out: &out, Err: &errb})
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || out.String() != tc.stdout || errb.String() != tc.stderr {
				t.Errorf("got code %d stdout %q stderr %q; want %d %q %q", code, out.String(), errb.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
	cats, err := p.Check(ctx, sdk.KubeFlags{})
	if err != nil || len(cats) != 1 || cats[0].Name != "hello" || len(cats[0].Checks) != 2 || cats[0].Checks[1].Status != sdk.StatusWarn {
		t.Errorf("checks %+v, %v", cats, err)
	}
	manifests, err := p.Install(ctx, sdk.InstallRequest{Values: map[string]any{"replicas": 3}})
	if err != nil || !strings.Contains(string(manifests), "replicas: 3") || !strings.Contains(string(manifests), "namespace: conduit-hello") {
		t.Errorf("install: %v\n%s", err, manifests)
	}
	_, err = p.AnnotateEndpoints(ctx, "web:80", nil)
	if !errors.Is(err, client.ErrNotSupported) || !strings.Contains(err.Error(), `extension "hello" (version 0.1.0) does not provide destination-hook (it provides: commands, install, checks, injector-hook)`) {
		t.Errorf("destination hook on a plugin without it: %v", err)
	}
	patch, err := p.PatchPod(ctx, &sdk.PodPatchRequest{Pod: []byte(`{"metadata":{"annotations":{"hello.conduit.dev/greeting":"hi"}},"spec":{"containers":[{"name":"a"},{"name":"b","env":[{"name":"X","value":"1"}]}]}}`)})
	wantPatch := `[{"op":"add","path":"/spec/containers/0/env","value":[{"name":"HELLO_GREETING","value":"hi"}]},{"op":"add","path":"/spec/containers/1/env/-","value":{"name":"HELLO_GREETING","value":"hi"}}]`
	if err != nil || string(patch) != wantPatch {
		t.Errorf("patch %s, %v; want %s", patch, err, wantPatch)
	}
	// The plugin's log record reaches the host's logger under its name.
	deadline := time.Now().Add(5 * time.Second)
	for !rec.contains("DEBUG greeting plugin=mesh-hello") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !rec.contains("name=Ada") {
		t.Errorf("the plugin's log did not reach the host logger: %q", rec.recs)
	}
}

func TestCloseStopsThePlugin(t *testing.T) {
	p, err := Launch(context.Background(), filepath.Join(plugins(t), "mesh-hello"), LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("the plugin exited on its own")
	}
	p.Close()
	if !p.Exited() {
		t.Error("the plugin still runs after Close")
	}
	if _, err := p.Run(context.Background(), []string{"greet"}, sdk.KubeFlags{}, client.Stdio{}); err == nil {
		t.Error("a closed plugin still runs commands")
	}
}

func TestVersionMismatch(t *testing.T) {
	_, err := Launch(context.Background(), filepath.Join(plugins(t), "mesh-future"), LaunchOptions{})
	if err == nil || !strings.Contains(err.Error(), "does not speak this mesh's plugin protocol conduit.plugin.v1 (go-plugin protocol version 1)") ||
		!strings.Contains(err.Error(), "Plugin version: 99") {
		t.Fatalf("got %v", err)
	}
}

func TestCrash(t *testing.T) {
	p := launch(t, "crasher", LaunchOptions{})
	_, err := p.Run(context.Background(), []string{"crash"}, sdk.KubeFlags{}, client.Stdio{})
	if err == nil || !strings.Contains(err.Error(), "the extension ended without an exit status") {
		t.Fatalf("run of a crashing command: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !p.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !p.Exited() {
		t.Error("the plugin process is still running")
	}
	// The host keeps working: another plugin launches fine.
	launch(t, "hello", LaunchOptions{})
}

func TestNameMismatch(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(plugins(t), "mesh-crasher"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mesh-other"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Launch(context.Background(), filepath.Join(dir, "mesh-other"), LaunchOptions{})
	if err == nil || !strings.Contains(err.Error(), `reports the extension name "crasher", not "other"`) {
		t.Fatalf("got %v", err)
	}
}

func TestNotAPlugin(t *testing.T) {
	dir := t.TempDir()
	for name, script := range map[string]string{
		"mesh-talker":  "#!/bin/sh\necho 'I am a shell script'\nsleep 1\n",
		"mesh-quitter": "#!/bin/sh\nexit 3\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := Launch(context.Background(), p, LaunchOptions{StartTimeout: 5 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "is not a Conduit plugin") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSlogWriter(t *testing.T) {
	rec := &recorder{}
	w := &slogWriter{l: slog.New(rec)}
	// Records arrive in pieces; levels, the plugin's name and attributes are kept.
	in := `{"@level":"warn","@message":"low disk","@module":"pluginhost.mesh-viz","@timestamp":"2026-01-01T00:00:00.000000Z","free":"1%"}` + "\n" +
		`{"@level":"debug","@message":"tick"}` + "\n" + "not json\n"
	for i := 0; i < len(in); i += 7 {
		end := min(i+7, len(in))
		if _, err := w.Write([]byte(in[i:end])); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"WARN low disk plugin=mesh-viz free=1%", "DEBUG tick", "INFO not json"}
	if strings.Join(rec.recs, "|") != strings.Join(want, "|") {
		t.Errorf("records %q, want %q", rec.recs, want)
	}
}
