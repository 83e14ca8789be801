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
