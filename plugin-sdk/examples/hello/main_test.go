package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
	"github.com/conduit-mesh/conduit/plugin-sdk/sdktest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestConformance(t *testing.T) {
	sdktest.Conformance(t, hello{}, sdktest.Options{
		Pod: []byte(`{"metadata":{"annotations":{"hello.conduit.dev/greeting":"hi"}},"spec":{"containers":[{"name":"app"}]}}`),
	})
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs (run go test -update if intended):\n%s", p, got)
	}
}

func TestInstall(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  sdk.InstallRequest
	}{
		{"install_default.golden", sdk.InstallRequest{}},
		{"install_custom.golden", sdk.InstallRequest{Namespace: "hello-test", Values: map[string]any{
			"injectorHook": false, "meshed": true, "replicas": 2, "image": map[string]any{"registry": "ghcr.io/me", "tag": "v0.1.0"},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := hello{}.Install(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if err := sdktest.ValidateManifests(out); err != nil {
				t.Error(err)
			}
			golden(t, tc.name, out)
		})
	}
	out, err := hello{}.Uninstall(context.Background(), sdk.InstallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "uninstall.golden", out)
}

func TestPatchPod(t *testing.T) {
	for _, tc := range []struct {
		name, pod, proxyPath, want string
	}{
		{"no annotation", `{"spec":{"containers":[{"name":"app"}]}}`, "/spec/containers/0", `null`},
		{"proxy first, app without env",
			`{"metadata":{"annotations":{"hello.conduit.dev/greeting":"hi"}},"spec":{"containers":[{"name":"conduit-proxy","env":[{"name":"A"}]},{"name":"app"}]}}`,
			"/spec/containers/0",
			`[{"op":"add","path":"/spec/containers/1/env","value":[{"name":"HELLO_GREETING","value":"hi"}]}]`},
		{"native proxy, app with env",
			`{"metadata":{"annotations":{"hello.conduit.dev/greeting":""}},"spec":{"containers":[{"name":"app","env":[{"name":"A"}]}]}}`,
			"/spec/initContainers/1",
			`[{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"HELLO_GREETING","value":""}}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := hello{}.PatchPod(context.Background(), &sdk.PodPatchRequest{Pod: []byte(tc.pod), ProxyPath: tc.proxyPath})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(ops)
			if string(b) != tc.want {
				t.Errorf("got %s\nwant %s", b, tc.want)
			}
		})
	}
	if _, err := (hello{}).PatchPod(context.Background(), &sdk.PodPatchRequest{Pod: []byte(`not json`)}); err == nil {
		t.Error("a pod that is not JSON gives no error")
	}
}

func TestGreet(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr bool
		out     string
	}{
		{args: []string{"greet"}, out: "Hello, world"},
		{args: []string{"greet", "--help"}, out: ""},
		{args: []string{"greet", "--bogus"}, wantErr: true},
	} {
		var stdout, stderr bytes.Buffer
		err := hello{}.Run(context.Background(), &sdk.Invocation{Args: tc.args, Stdout: &stdout, Stderr: &stderr})
		if (err != nil) != tc.wantErr {
			t.Errorf("%v: err %v, want error %v (stderr %q)", tc.args, err, tc.wantErr, stderr.String())
		}
		if tc.out != "" && !strings.Contains(stdout.String(), tc.out) {
			t.Errorf("%v: stdout %q, want %q", tc.args, stdout.String(), tc.out)
		}
	}
}

// TestUsage: a usage error of mesh hello (an unknown command, flag or
// argument) exits 1 with one line that names the command and what it takes,
// as mesh's own do (docs/cli.md); it exited 2, with the flag package's usage
// on stderr, and extra arguments were ignored. Help, asked for, is on
// stdout with status 0. Run through the SDK as mesh runs it, so the status
// and stderr are what the user gets.
func TestUsage(t *testing.T) {
	c := sdktest.Start(t, hello{})
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
		golden string // stdout, when not empty
	}{
		{name: "unknown flag", args: []string{"greet", "--bogus"}, code: 1,
			stderr: "Error: mesh hello greet: flag provided but not defined: -bogus (see 'mesh hello greet --help')\n"},
		{name: "flag value", args: []string{"greet", "--shout=maybe"}, code: 1,
			stderr: "Error: mesh hello greet: invalid boolean value \"maybe\" for -shout: parse error (see 'mesh hello greet --help')\n"},
		{name: "unknown command", args: []string{"bogus"}, code: 1,
			stderr: "Error: mesh hello: unknown command \"bogus\" (commands: greet, echo, exit; see 'mesh hello --help')\n"},
		{name: "greet: two names", args: []string{"greet", "Ada", "Grace"}, code: 1,
			stderr: "Error: mesh hello greet: takes at most one NAME, got [\"Ada\" \"Grace\"] (usage: mesh hello greet [--shout] [NAME])\n"},
		{name: "echo: an argument", args: []string{"echo", "x"}, code: 1,
			stderr: "Error: mesh hello echo: takes no arguments, got [\"x\"] (usage: mesh hello echo)\n"},
		{name: "exit: no status", args: []string{"exit"}, code: 1,
			stderr: "Error: mesh hello exit: takes one CODE, got [] (usage: mesh hello exit CODE)\n"},
		{name: "exit: not a number", args: []string{"exit", "x"}, code: 1,
			stderr: "Error: mesh hello exit: CODE \"x\" is not a number (usage: mesh hello exit CODE)\n"},
		{name: "exit: a status is no usage error", args: []string{"exit", "3"}, code: 3, stderr: "exiting with 3\n"},
		{name: "no command", golden: "help.golden"},
		{name: "--help", args: []string{"--help"}, golden: "help.golden"},
		{name: "-h", args: []string{"-h"}, golden: "help.golden"},
		{name: "help", args: []string{"help"}, golden: "help.golden"},
		{name: "greet --help", args: []string{"greet", "--help"}, golden: "help_greet.golden"},
		{name: "exit -h", args: []string{"exit", "-h"}, golden: "help_exit.golden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code, err := c.Run(context.Background(), tc.args, sdk.KubeFlags{}, client.Stdio{In: strings.NewReader(""), Out: &stdout, Err: &stderr})
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || stderr.String() != tc.stderr {
				t.Errorf("status %d, stderr %q\nwant %d, %q", code, stderr.String(), tc.code, tc.stderr)
			}
			if tc.golden != "" {
				golden(t, tc.golden, stdout.Bytes())
			} else if stdout.Len() > 0 {
				t.Errorf("stdout %q, want none", stdout.String())
			}
		})
	}
}
