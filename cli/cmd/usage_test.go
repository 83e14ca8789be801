package cmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
)

// TestUsageErrors: a wrong flag, flag value, argument count or subcommand
// is an error (exit status 1) that names the command and what it accepts,
// on one line, before any cluster is reached (none is given here).
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the whole error
	}{
		// Printed the group's help and exited 0.
		{[]string{"extensions", "bogus"}, `unknown command "bogus" for "mesh extensions"`},
		{[]string{"completion", "bogus"}, `unknown command "bogus" for "mesh completion"`},
		// Named neither the command nor what it takes ("accepts 1 arg(s), received 0").
		{[]string{"identity"}, "mesh identity: accepts 1 arg(s), received 0 (usage: mesh identity POD [flags])"},
		{[]string{"extensions", "allow"}, "mesh extensions allow: accepts 1 arg(s), received 0 (usage: mesh extensions allow NAME [flags])"},
		{[]string{"diagnostics", "proxy-log-level"}, "mesh diagnostics proxy-log-level: accepts between 1 and 2 arg(s), received 0 (usage: mesh diagnostics proxy-log-level POD [LEVEL] [flags])"},
		{[]string{"inject"}, "mesh inject: requires at least 1 arg(s), only received 0 (usage: mesh inject FILE|DIR|- ... [flags])"},
		{[]string{"check", "extra"}, `unknown command "extra" for "mesh check"`},
		// Named no command ("unknown shorthand flag: 'o' in -o").
		{[]string{"diagnostics", "controller-metrics", "-o", "json"}, "mesh diagnostics controller-metrics: unknown shorthand flag: 'o' in -o (see 'mesh diagnostics controller-metrics --help')"},
		{[]string{"check", "--wait", "soon"}, `mesh check: invalid argument "soon" for "--wait" flag: time: invalid duration "soon" (see 'mesh check --help')`},
		{[]string{"--bogus"}, "mesh: unknown flag: --bogus (see 'mesh --help')"},
		// A negative --wait was taken as 0; a --timeout of 0 or less failed
		// with "context deadline exceeded" about the destination pods.
		{[]string{"check", "--wait", "-1s"}, "check: --wait -1s is negative (accepted: 0s, to run each check once, or more, e.g. 2m)"},
		{[]string{"diagnostics", "endpoints", "web.emojivoto.svc.cluster.local:80", "--timeout", "0s"}, "diagnostics endpoints: --timeout 0s: accepted: a positive duration, e.g. 30s or 2m"},
		{[]string{"diagnostics", "profile", "web.emojivoto.svc.cluster.local:80", "--timeout", "-1s"}, "diagnostics profile: --timeout -1s: accepted: a positive duration, e.g. 30s or 2m"},
		{[]string{"identity", "rotate-anchors", "--timeout", "-5m", "--generate-dir", "x"}, "rotate-anchors: --timeout -5m0s: accepted: a positive duration, e.g. 30s or 2m"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errs, err := runWith(t, nil, append([]string{"--kubeconfig", "/nonexistent/kubeconfig"}, tc.args...)...)
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v\nwant  %s", err, tc.want)
			}
			if out != "" || errs != "" {
				t.Errorf("stdout %q stderr %q", out, errs)
			}
		})
	}
}

// TestGroupHelp: a group of commands without arguments still prints its help.
func TestGroupHelp(t *testing.T) {
	for _, args := range [][]string{{"extensions"}, {"completion"}, {"diagnostics"}} {
		out, errs, err := runWith(t, nil, args...)
		if err != nil || errs != "" || !strings.Contains(out, "Available Commands:") {
			t.Errorf("%v: err %v stderr %q stdout:\n%s", args, err, errs, out)
		}
	}
}

// TestPluginUsage: the usage of an extension without commands of its own
// is on stdout when asked for (it was on stderr), and an unknown command
// exits 1 like every other usage error (it exited 2).
func TestPluginUsage(t *testing.T) {
	info := pluginhost.Info{Name: "quiet", Version: "1.0.0", Description: "no commands", Capabilities: []client.Capability{client.Install}}
	const usage = "quiet 1.0.0 — no commands\n\nUsage:\n" +
		"  mesh quiet install [--set k=v] [-f values.yaml] | kubectl apply -f -\n" +
		"  mesh quiet uninstall | kubectl delete -f -\n"
	for _, tc := range []struct {
		sub            string
		code           int
		err            string
		stdout, stderr string
	}{
		{sub: "", stdout: usage},
		{sub: "help", stdout: usage},
		{sub: "-h", stdout: usage},
		{sub: "--help", stdout: usage},
		{sub: "bogus", code: 1, err: `unknown command "bogus" (see 'mesh quiet --help')`, stderr: usage},
	} {
		t.Run(tc.sub, func(t *testing.T) {
			var out, errb bytes.Buffer
			code, err := pluginUsage(&Options{Out: &out, Err: &errb}, info, tc.sub)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if code != tc.code || gotErr != tc.err || out.String() != tc.stdout || errb.String() != tc.stderr {
				t.Errorf("code %d err %q stdout %q stderr %q", code, gotErr, out.String(), errb.String())
			}
		})
	}
}
