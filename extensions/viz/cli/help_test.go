package cli

import (
	"strings"
	"testing"
)

// TestHelp: `mesh viz --help` lists install, uninstall and check with the
// other commands (they were only in its description: mesh serves them, the
// plugin's help listed its own commands), and `mesh viz help install` says
// how to run it. Help is on stdout.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"help.golden", []string{"--help"}},
		{"help.golden", []string{"help"}},
		{"help_install.golden", []string{"help", "install"}},
		{"help_uninstall.golden", []string{"help", "uninstall"}},
		{"help_check.golden", []string{"help", "check"}},
		{"help_top.golden", []string{"top", "--help"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := run(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, out)
		})
	}
}

// TestHelpUnknown: help of a command viz does not have is an error.
func TestHelpUnknown(t *testing.T) {
	out, err := run(t, "help", "bogus")
	if want := `viz: unknown command "bogus" for "mesh viz" (see 'mesh viz --help')`; err == nil || err.Error() != want || out != "" {
		t.Errorf("out %q err %v, want %q", out, err, want)
	}
}

// TestHostCommandsNotRun: mesh runs install, uninstall and check itself;
// should the plugin be asked to, it says so instead of succeeding silently.
func TestHostCommandsNotRun(t *testing.T) {
	for _, h := range HostCommands {
		out, err := run(t, h.Name, "--set", "x=1")
		want := "viz: " + h.Name + " is served by mesh, not by the mesh-viz plugin: run '" + h.Usage + "'"
		if err == nil || !strings.HasPrefix(err.Error(), want) || out != "" {
			t.Errorf("%s: out %q err %v, want %q", h.Name, out, err, want)
		}
	}
}
