package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoCLI: the injector downloads and runs this binary as viz's hook
// plugin, so it links the hooks (package hooks), not the CLI, the chart
// renderer or Helm (package plugin, for mesh-viz).
func TestLinksNoCLI(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to list the dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"helm.sh/", "/extensions/viz/cli", "/extensions/viz/install", "/extensions/viz/plugin"} {
			if strings.Contains(dep, banned) {
				t.Errorf("viz-controller links %s", dep)
			}
		}
	}
}
