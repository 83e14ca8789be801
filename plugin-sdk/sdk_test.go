package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
	"github.com/conduit-mesh/conduit/plugin-sdk/sdktest"
)

// blockEnded receives the context error of the "block" command.
var blockEnded = make(chan error, 1)

// full implements every capability.
type full struct{ minimal }

func (full) Commands() []sdk.Command { return []sdk.Command{{Name: "say", Short: "say things"}} }

func (full) Run(ctx context.Context, inv *sdk.Invocation) error {
	switch inv.Args[0] {
	case "say":
		fmt.Fprint(inv.Stdout, strings.Join(inv.Args[1:], " "))
		fmt.Fprint(inv.Stderr, "ns="+inv.Kube.Namespace)
		return nil
	case "cat":
		_, err := io.Copy(inv.Stdout, inv.Stdin)
		return err
	case "big":
		_, err := inv.Stdout.Write(bytes.Repeat([]byte("x"), 100<<10))
		return err
	case "exit":
		return sdk.Exit(7)
	case "block":
		fmt.Fprintln(inv.Stdout, "blocking")
		<-ctx.Done()
		blockEnded <- ctx.Err()
		return ctx.Err()
	case "panic":
		panic("boom")
	}
	return errors.New("no such command")
}

func (full) Install(_ context.Context, req sdk.InstallRequest) ([]byte, error) {
	return []byte(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels: {replicas: %q}\n", orDefault(req.Namespace, "conduit-full"), fmt.Sprint(req.Values["replicas"]))), nil
}

func (full) Uninstall(context.Context, sdk.InstallRequest) ([]byte, error) {
	return []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: conduit-full\n"), nil
}

func (full) Check(context.Context, sdk.KubeFlags) ([]sdk.CheckCategory, error) {
	return []sdk.CheckCategory{{Name: "full", Checks: []sdk.CheckResult{
		{Description: "a", Status: sdk.StatusOK},
		{Description: "b", Status: sdk.StatusFail, Error: "b is broken", Hint: "fix b"},
	}}}, nil
}

func (full) PatchPod(context.Context, *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
	return []sdk.PatchOp{
		{Op: "add", Path: "/metadata/annotations/" + sdk.EscapePointer("full.dev/on"), Value: ""},
		{Op: "remove", Path: "/metadata/labels/x"},
	}, nil
}

func (full) AnnotateEndpoints(_ context.Context, _ string, eps []sdk.Endpoint) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, e := range eps {
		out[e.Address] = map[string]string{"pod": e.PodName}
	}
	return out, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// minimal implements only Info.
type minimal struct{}

func (minimal) Info() sdk.Info { return sdk.Info{Name: "full", Version: "1.0.0"} }

func TestConformance(t *testing.T) {
	sdktest.Conformance(t, full{}, sdktest.Options{})
	sdktest.Conformance(t, minimal{}, sdktest.Options{})
}

func TestInfoCapabilities(t *testing.T) {
	for _, tc := range []struct {
		ext  sdk.Extension
		want []client.Capability
	}{
		{minimal{}, nil},
		{full{}, []client.Capability{client.Commands, client.Install, client.Checks, client.InjectorHook, client.DestinationHook}},
	} {
		info, err := sdktest.Start(t, tc.ext).Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(info.Capabilities) != fmt.Sprint(tc.want) {
			t.Errorf("%T: capabilities %v, want %v", tc.ext, info.Capabilities, tc.want)
		}
		if info.SDKVersion != sdk.Version || len(info.APIVersions) != 1 || info.APIVersions[0] != sdk.APIVersion {
			t.Errorf("%T: sdk %q api %v", tc.ext, info.SDKVersion, info.APIVersions)
		}
	}
}

// flagged is a Checker whose check takes flags of its own.
type flagged struct{ minimal }

func (f flagged) Check(ctx context.Context, kube sdk.KubeFlags) ([]sdk.CheckCategory, error) {
	return f.CheckWithFlags(ctx, kube, nil)
}

func (flagged) CheckFlags() []sdk.CheckFlag {
	return []sdk.CheckFlag{{Name: "color", Usage: "the color to check"}, {Name: "size", Usage: "the size to check"}}
}

func (flagged) CheckWithFlags(_ context.Context, kube sdk.KubeFlags, flags map[string]string) ([]sdk.CheckCategory, error) {
	desc := fmt.Sprintf("ns=%s color=%q size=%q flags=%d", kube.Namespace, flags["color"], flags["size"], len(flags))
	return []sdk.CheckCategory{{Name: "flagged", Checks: []sdk.CheckResult{{Description: desc, Status: sdk.StatusOK}}}}, nil
}

// TestCheckFlags: an extension's check flags are declared in Info, and the
// values the host sends reach CheckWithFlags; Check sends none, and a flag
// that is not declared is refused.
func TestCheckFlags(t *testing.T) {
	ctx := context.Background()
	c := sdktest.Start(t, flagged{})
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[{color the color to check} {size the size to check}]"; fmt.Sprint(info.CheckFlags) != want || !info.Has(client.Checks) {
		t.Errorf("check flags %v capabilities %v, want %s", info.CheckFlags, info.Capabilities, want)
	}
	for _, tc := range []struct {
		flags map[string]string
		want  string
	}{
		{map[string]string{"color": "red"}, `ns=web color="red" size="" flags=1`},
		{map[string]string{"color": "", "size": "xl"}, `ns=web color="" size="xl" flags=2`},
		{nil, `ns=web color="" size="" flags=0`},
	} {
		cats, err := c.CheckWithFlags(ctx, sdk.KubeFlags{Namespace: "web"}, tc.flags)
		if err != nil || len(cats) != 1 || len(cats[0].Checks) != 1 || cats[0].Checks[0].Description != tc.want {
			t.Errorf("%v: %v %+v, want %s", tc.flags, err, cats, tc.want)
		}
	}
	if cats, err := c.Check(ctx, sdk.KubeFlags{}); err != nil || cats[0].Checks[0].Description != `ns= color="" size="" flags=0` {
		t.Errorf("Check: %v %+v", err, cats)
	}
	if _, err := c.CheckWithFlags(ctx, sdk.KubeFlags{}, map[string]string{"shape": "round"}); err == nil || !strings.Contains(err.Error(), `check flag "shape" is not declared`) {
		t.Errorf("undeclared flag: %v", err)
	}

	// A Checker without flags declares none and takes none.
	plain := sdktest.Start(t, full{})
	if info, err := plain.Info(ctx); err != nil || info.CheckFlags != nil {
		t.Errorf("full: %v check flags %v", err, info.CheckFlags)
	}
	if _, err := plain.CheckWithFlags(ctx, sdk.KubeFlags{}, map[string]string{"color": "red"}); err == nil || !strings.Contains(err.Error(), `check flag "color" is not declared`) {
		t.Errorf("full: undeclared flag: %v", err)
	}
	if cats, err := plain.CheckWithFlags(ctx, sdk.KubeFlags{}, nil); err != nil || len(cats) != 1 {
		t.Errorf("full: no flags: %v %+v", err, cats)
	}
}

func TestRun(t *testing.T) {
	c := sdktest.Start(t, full{})
	for _, tc := range []struct {
		args             []string
		stdin            string
		code             int
		stdout, inStderr string
	}{
		{args: []string{"say", "hello", "there"}, code: 0, stdout: "hello there", inStderr: "ns=web"},
		{args: []string{"cat"}, stdin: "from stdin\n", stdout: "from stdin\n"},
		{args: []string{"big"}, stdout: strings.Repeat("x", 100<<10)},
		{args: []string{"exit"}, code: 7},
		{args: []string{"nope"}, code: 1, inStderr: "Error: no such command"},
		{args: []string{"panic"}, code: 2, inStderr: "panicked: boom"},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			var out, errb bytes.Buffer
			code, err := c.Run(context.Background(), tc.args, sdk.KubeFlags{Namespace: "web"},
				client.Stdio{In: strings.NewReader(tc.stdin), Out: &out, Err: &errb})
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || out.String() != tc.stdout || !strings.Contains(errb.String(), tc.inStderr) {
				t.Errorf("code %d stdout %.40q stderr %q; want %d %.40q and stderr containing %q", code, out.String(), errb.String(), tc.code, tc.stdout, tc.inStderr)
			}
		})
	}
}

func TestRunCancel(t *testing.T) {
	c := sdktest.Start(t, full{})
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, []string{"block"}, sdk.KubeFlags{}, client.Stdio{Out: out})
		done <- err
	}()
	for !strings.Contains(out.String(), "blocking") {
		time.Sleep(5 * time.Millisecond)
	}
	cancel() // Ctrl-C in mesh
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	select {
	case err := <-blockEnded:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the command's context ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the command's context was not cancelled")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAbsentCapability(t *testing.T) {
	c := sdktest.Start(t, minimal{})
	ctx := context.Background()
	_, err := c.Run(ctx, []string{"x"}, sdk.KubeFlags{}, client.Stdio{})
	if !errors.Is(err, client.ErrNotSupported) || !strings.Contains(err.Error(), `"full" (version 1.0.0) does not provide commands (it provides: none)`) {
		t.Errorf("Run: %v", err)
	}
	if _, err := c.Check(ctx, sdk.KubeFlags{}); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("Check: %v", err)
	}
	if _, err := c.Install(ctx, sdk.InstallRequest{}); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("Install: %v", err)
	}
	if _, err := c.PatchPod(ctx, &sdk.PodPatchRequest{}); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("PatchPod: %v", err)
	}
	if _, err := c.AnnotateEndpoints(ctx, "a", nil); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("AnnotateEndpoints: %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	c := sdktest.Start(t, full{})
	ctx := context.Background()
	out, err := c.Install(ctx, sdk.InstallRequest{Values: map[string]any{"replicas": 3}, Namespace: "x"})
	if err != nil || !strings.Contains(string(out), "name: x") || !strings.Contains(string(out), `replicas: "3"`) {
		t.Errorf("Install: %q %v", out, err)
	}
	cats, err := c.Check(ctx, sdk.KubeFlags{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cats)
	want := `[{"categoryName":"full","checks":[{"description":"a","result":"success"},{"description":"b","result":"error","error":"b is broken","hint":"fix b"}]}]`
	if string(b) != want {
		t.Errorf("Check JSON:\n%s\nwant\n%s", b, want)
	}
	patch, err := c.PatchPod(ctx, &sdk.PodPatchRequest{Pod: []byte(`{}`)})
	want = `[{"op":"add","path":"/metadata/annotations/full.dev~1on","value":""},{"op":"remove","path":"/metadata/labels/x"}]`
	if err != nil || string(patch) != want {
		t.Errorf("PatchPod: %s %v, want %s", patch, err, want)
	}
	md, err := c.AnnotateEndpoints(ctx, "web:80", []sdk.Endpoint{{Address: "1.2.3.4:80", PodName: "web-0"}})
	if err != nil || md["1.2.3.4:80"]["pod"] != "web-0" {
		t.Errorf("AnnotateEndpoints: %v %v", md, err)
	}
}

func TestInfoValidate(t *testing.T) {
	for _, tc := range []struct {
		info sdk.Info
		ok   bool
	}{
		{sdk.Info{Name: "viz", Version: "1.2.3"}, true},
		{sdk.Info{Name: "viz", Version: "v0.1.0-rc.1+abc"}, true},
		{sdk.Info{Name: "Viz", Version: "1.0.0"}, false},
		{sdk.Info{Name: "my ext", Version: "1.0.0"}, false},
		{sdk.Info{Name: "viz", Version: "latest"}, false},
		{sdk.Info{}, false},
	} {
		if err := tc.info.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.info, err)
		}
	}
}

func TestValidateCheckJSON(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`[{"categoryName":"a","checks":[{"description":"d","result":"success"},{"description":"e","result":"skipped"}]}]`, true},
		{`[{"categoryName":"a","checks":[{"description":"d","result":"warning","error":"e","hint":"h"}]}]`, true},
		{`[{"categoryName":"a","checks":[{"description":"d","result":"warning"}]}]`, false}, // no hint
		{`[{"categoryName":"a","checks":[{"description":"d","result":"ok","hint":"h"}]}]`, false},
		{`[{"categoryName":"","checks":[]}]`, false},
		{`[{"categoryName":"a","checks":[],"extra":1}]`, false},
		{`[{"name":"a","checks":[]}]`, false},
		{`{}`, false},
	} {
		if err := sdktest.ValidateCheckJSON([]byte(tc.in)); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.in, err)
		}
	}
}

func TestLogger(t *testing.T) {
	var b bytes.Buffer
	sdk.NewLogger(&b, -4).Warn("careful", "k", "v")
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["@level"] != "warn" || m["@message"] != "careful" || m["k"] != "v" || m["time"] != nil {
		t.Errorf("log record %v", m)
	}
}

func TestValidateManifests(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n", true},
		{"---\n# Source: x\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n# empty\n", true},
		{"# only comments\n---\n", false},
		{"apiVersion: v1\nkind: Namespace\nmetadata: {}\n", false},
		{"apiVersion: v1\nkind: [\n", false},
	} {
		if err := sdktest.ValidateManifests([]byte(tc.in)); (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.in, err)
		}
	}
}

// badPatch returns an operation the SDK refuses to send.
type badPatch struct{ minimal }

func (badPatch) PatchPod(context.Context, *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
	return []sdk.PatchOp{{Op: "move", Path: "/a"}}, nil
}

func TestPatchPodInvalidOp(t *testing.T) {
	_, err := sdktest.Start(t, badPatch{}).PatchPod(context.Background(), &sdk.PodPatchRequest{Pod: []byte(`{}`)})
	if err == nil || !strings.Contains(err.Error(), `patch op "move" on "/a" is not one of add, remove, replace, test`) {
		t.Errorf("got %v", err)
	}
}
