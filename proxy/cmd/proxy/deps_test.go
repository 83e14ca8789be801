package main

import (
	"os/exec"
	"strings"
	"testing"
)

// buildTags are the tags the Makefile (GO_TAGS) and hack/imagebuild build the proxy with.
const buildTags = "grpcnotrace"

// TestLeanDependencies keeps out of the proxy the packages that once made up a seventh of its binary and of its idle
// RSS: grpc-go's request tracing (golang.org/x/net/trace, left out by the grpcnotrace tag) and, through it,
// html/template. Once text/template is linked, the linker can no longer drop unused exported methods, because a
// template may call any of them by name.
func TestLeanDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-tags", buildTags, "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	if !deps["google.golang.org/grpc"] {
		t.Fatalf("go list listed no google.golang.org/grpc among %d packages: not the proxy's dependencies", len(deps))
	}
	for _, p := range []string{"golang.org/x/net/trace", "text/template", "html/template"} {
		if deps[p] {
			t.Errorf("the proxy links %s; see the comment on this test for why it must not", p)
		}
	}
}
