package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/cli/healthcheck"
	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExtractKubeFlags(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		rest     string
		ns, ctx  string
		kubeconf string
		wantErr  bool
	}{
		{args: []string{"stat", "deploy"}, rest: "stat deploy"},
		{args: []string{"stat", "-n", "web", "deploy"}, rest: "stat deploy", ns: "web"},
		{args: []string{"stat", "-nweb", "--context=kind", "x"}, rest: "stat x", ns: "web", ctx: "kind"},
		{args: []string{"--namespace", "a", "--kubeconfig", "/k", "stat"}, rest: "stat", ns: "a", kubeconf: "/k"},
		{args: []string{"stat", "--", "-n", "raw"}, rest: "stat -- -n raw"},
		{args: []string{"stat", "--shout", "-x"}, rest: "stat --shout -x"},
		{args: []string{"stat", "-n"}, wantErr: true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o := &Options{}
			root := NewRootCmd(o)
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			fs.AddFlagSet(root.PersistentFlags())
			rest, err := extractKubeFlags(fs, tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if err != nil {
				return
			}
			if strings.Join(rest, " ") != tc.rest || o.Namespace != tc.ns || o.Context != tc.ctx || o.Kubeconfig != tc.kubeconf {
				t.Errorf("rest %q ns %q ctx %q kubeconfig %q", rest, o.Namespace, o.Context, o.Kubeconfig)
			}
		})
	}
}

// buildHello builds the example plugin into a directory used as
// $MESH_PLUGINS_DIR, with an empty home and PATH.
func buildHello(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the example plugin")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "mesh-hello"), "github.com/conduit-mesh/conduit/plugin-sdk/examples/hello")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Setenv(pluginhost.EnvPluginsDir, dir)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("PATH", "")
	return dir
}

func TestPlugins(t *testing.T) {
	dir := buildHello(t)
	k, _ := fakeKube(false,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-hello", Labels: map[string]string{pluginhost.LabelExtension: "hello", pluginhost.LabelExtensionVersion: "0.1.0"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit-viz", Labels: map[string]string{pluginhost.LabelExtension: "viz"}}},
	)
	run := func(stdin string, args ...string) (int, bool, string, string) {
		var out, errb bytes.Buffer
		o := &Options{Out: &out, Err: &errb, In: strings.NewReader(stdin), NewKube: func() (*Kube, error) { return k, nil }}
		code, handled := RunPlugin(context.Background(), o, NewRootCmd(o), args)
		return code, handled, out.String(), errb.String()
	}
	for _, tc := range []struct {
		name           string
		args           []string
		stdin          string
		code           int
		handled        bool
		stdout, stderr string
	}{
		{name: "command with kube flags anywhere", args: []string{"--context", "c", "hello", "greet", "-n", "web", "Ada"}, handled: true, stdout: "Hello, Ada. (namespace web)\n"},
		{name: "exit status", args: []string{"hello", "exit", "3"}, handled: true, code: 3, stderr: "exiting with 3\n"},
		{name: "stdin", args: []string{"hello", "echo"}, stdin: "piped\n", handled: true, stdout: "piped\n"},
		{name: "built-in", args: []string{"version", "--client"}},
		{name: "help", args: []string{"help"}},
		{name: "flag error goes to cobra", args: []string{"--bogus", "hello"}},
		{name: "unknown", args: []string{"nope", "x"}, handled: true, code: 1,
			stderr: "Error: unknown command \"nope\" for \"mesh\": it is no built-in command, and no plugin mesh-nope is in $MESH_PLUGINS_DIR, ~/.conduit/plugins or $PATH\n" +
				"Run 'mesh --help' for the commands, and 'mesh extensions list' for the extensions installed in the cluster.\n"},
		{name: "install flags", args: []string{"hello", "install", "--bogus"}, handled: true, code: 1,
			stderr: "Error: hello: install: unknown flag: --bogus (see 'mesh hello install --help')\n"},
		// A usage error of check exits 1, as every other does (docs/cli.md);
		// it was 2, and extra arguments were ignored.
		{name: "check flags", args: []string{"hello", "check", "--bogus"}, handled: true, code: 1,
			stderr: "Error: hello: check: unknown flag: --bogus (see 'mesh hello check --help')\n"},
		{name: "check output", args: []string{"hello", "check", "-o", "yaml"}, handled: true, code: 1,
			stderr: "Error: hello: check: unknown output format \"yaml\" (accepted: table, short, json)\n"},
		{name: "check arguments", args: []string{"hello", "check", "x"}, handled: true, code: 1,
			stderr: "Error: hello: check takes no arguments, got [\"x\"]\n"},
		{name: "install arguments", args: []string{"hello", "install", "x"}, handled: true, code: 1,
			stderr: "Error: hello: install takes no arguments, got [\"x\"]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, handled, out, errs := run(tc.stdin, tc.args...)
			if code != tc.code || handled != tc.handled || out != tc.stdout || errs != tc.stderr {
				t.Errorf("got code %d handled %v stdout %q stderr %q\nwant code %d handled %v stdout %q stderr %q", code, handled, out, errs, tc.code, tc.handled, tc.stdout, tc.stderr)
			}
		})
	}

	t.Run("install", func(t *testing.T) {
		values := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(values, []byte("replicas: 2\nimage: {tag: v9}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, out, errs := run("", "hello", "install", "-f", values, "--set", "replicas=3", "--set-string", "hookPort=9000")
		// hello's manifests advertise an injector hook: stderr says how to allow it.
		if code != 0 || errs != "Once applied, the control plane runs the hooks of hello only when allowed: mesh extensions allow hello\n" {
			t.Fatalf("code %d stderr %q", code, errs)
		}
		golden(t, "plugin_install.golden", out)
		code, _, out, errs = run("", "hello", "uninstall")
		if code != 0 || errs != "" || !strings.Contains(out, "kind: Namespace") {
			t.Fatalf("uninstall: code %d stderr %q\n%s", code, errs, out)
		}
	})
	// --help on the host's own commands of an extension teaches them, on
	// stdout, and succeeds (it printed pflag's bare flag list and then
	// "Error: hello: install: pflag: help requested", exit status 1).
	t.Run("help of install, uninstall, check", func(t *testing.T) {
		for _, args := range [][]string{{"install", "--help"}, {"uninstall", "-h"}, {"check", "--help"}} {
			code, _, out, errs := run("", append([]string{"hello"}, args...)...)
			if code != 0 || errs != "" {
				t.Fatalf("%v: code %d stderr %q", args, code, errs)
			}
			golden(t, "plugin_help_"+args[0]+".golden", out)
		}
	})
	t.Run("check", func(t *testing.T) {
		code, _, out, errs := run("", "hello", "check", "-o", "json")
		if code != 0 || errs != "" {
			t.Fatalf("code %d stderr %q", code, errs)
		}
		golden(t, "plugin_check.golden", out)
	})
	// An extension's check flags: `mesh hello check --friend NAME` reaches
	// the plugin's check with NAME (it was "unknown flag: --friend": the host
	// parsed check's flags itself and passed the plugin none).
	t.Run("check flags reach the plugin", func(t *testing.T) {
		for _, args := range [][]string{{"--friend", "Ada"}, {"-o", "json", "--friend=Ada"}} {
			code, _, out, errs := run("", append([]string{"hello", "check"}, args...)...)
			if code != 0 || errs != "" || !strings.Contains(out, "hello has a friend (Ada)") {
				t.Errorf("%v: code %d stderr %q stdout:\n%s", args, code, errs, out)
			}
		}
		code, _, out, _ := run("", "hello", "check", "--help")
		if code != 0 || !strings.Contains(out, "--friend string") {
			t.Errorf("help: code %d:\n%s", code, out)
		}
		// The usage of an extension without commands of its own lists them.
		var usage bytes.Buffer
		printPluginUsage(&usage, pluginhost.Info{Name: "hello", Capabilities: []client.Capability{client.Checks}, CheckFlags: []sdk.CheckFlag{{Name: "friend"}}})
		if !strings.Contains(usage.String(), "mesh hello check [--friend VALUE] [-o table|short|json]\n") {
			t.Errorf("usage:\n%s", usage.String())
		}
	})
	t.Run("extensions list", func(t *testing.T) {
		for _, format := range []string{"table", "json"} {
			out, errs, err := runWith(t, k, "extensions", "list", "-o", format)
			if err != nil || errs != "" {
				t.Fatalf("%v %q", err, errs)
			}
			golden(t, "extensions_list_"+format+".golden", strings.ReplaceAll(out, dir, "$MESH_PLUGINS_DIR"))
		}
	})
	t.Run("mesh check runs the extensions' checks", func(t *testing.T) {
		var out bytes.Buffer
		o := &Options{Out: &out, Err: &out, NewKube: func() (*Kube, error) { return k, nil }}
		cats := extensionCheckCategories(context.Background(), o)
		rep := runChecks(context.Background(), o, cats, checkOptions{output: "json"})
		if !rep.Success {
			t.Errorf("warnings only, yet the run fails")
		}
		golden(t, "extension_checks.golden", out.String())
	})
	t.Run("missing binary", func(t *testing.T) {
		if err := os.Remove(filepath.Join(dir, "mesh-hello")); err != nil {
			t.Fatal(err)
		}
		out, _, err := runWith(t, k, "extensions", "list")
		if err != nil || !strings.Contains(out, pluginhost.MissingPluginWarning("hello", "conduit-hello")) {
			t.Errorf("%v\n%s", err, out)
		}
	})
}

// TestPluginCheckFailureJSON: an extension whose checks cannot run (its
// plugin fails the call) still gets a check report in the format asked for,
// one failed check that says so, and a failing run.
func TestPluginCheckFailureJSON(t *testing.T) {
	var out bytes.Buffer
	o := &Options{Out: &out, Err: &out}
	cats := pluginCheckCategories("hello", nil, errors.New("rpc error: plugin exited"))
	rep := runChecks(context.Background(), o, cats, checkOptions{output: "json"})
	if rep.Success {
		t.Error("the run succeeds though the extension's checks did not run")
	}
	var got healthcheck.Report
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if got.Success || len(got.Categories) != 1 || got.Categories[0].Name != "hello" || len(got.Categories[0].Checks) != 1 ||
		got.Categories[0].Checks[0].Status != healthcheck.Failure || !strings.Contains(got.Categories[0].Checks[0].Error, "plugin exited") {
		t.Errorf("report:\n%s", out.String())
	}
}
