package framework

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Result is the outcome of a command run by the framework.
type Result struct {
	Stdout, Stderr string
	Err            error // non-nil when the command could not run or exited non-zero
}

func (f *Framework) run(ctx context.Context, stdin io.Reader, bin string, args ...string) Result {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+f.Kubeconfig)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("e2e: %s %s: %w\nstderr: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// RunMesh runs the built CLI (bin/mesh) with KUBECONFIG set to the test cluster.
func (f *Framework) RunMesh(ctx context.Context, args ...string) Result {
	return f.run(ctx, nil, f.Mesh, args...)
}

// MeshCmd runs the CLI and returns its stdout, failing the test if it fails.
func (f *Framework) MeshCmd(t testing.TB, args ...string) string {
	t.Helper()
	r := f.RunMesh(Context(t, 5*time.Minute), args...)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	return r.Stdout
}

// RunKubectl runs kubectl against the test cluster, with stdin if not empty.
func (f *Framework) RunKubectl(ctx context.Context, stdin string, args ...string) Result {
	var in io.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	return f.run(ctx, in, f.Kubectl, args...)
}

// KubectlCmd runs kubectl and returns its stdout, failing the test if it fails.
func (f *Framework) KubectlCmd(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	r := f.RunKubectl(Context(t, 5*time.Minute), stdin, args...)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	return r.Stdout
}

// MeshHas reports whether the built CLI exists and has the (sub)command, e.g. MeshHas("install")
// or MeshHas("viz", "stat"). Tests of features still being written skip with it.
func (f *Framework) MeshHas(command ...string) (bool, string) {
	if _, err := os.Stat(f.Mesh); err != nil {
		return false, fmt.Sprintf("%s does not exist (make build)", f.Mesh)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := f.RunMesh(ctx, append(append([]string{}, command...), "--help")...)
	if r.Err != nil {
		return false, fmt.Sprintf("'mesh %s' is not available: %v", strings.Join(command, " "), r.Err)
	}
	// cobra prints the parent's help for an unknown subcommand of a command without Run.
	if !strings.Contains(r.Stdout, "mesh "+strings.Join(command, " ")) {
		return false, fmt.Sprintf("'mesh %s' is not a command of %s", strings.Join(command, " "), f.Mesh)
	}
	return true, ""
}

// RequireMesh skips the test unless the CLI has the command.
func (f *Framework) RequireMesh(t testing.TB, command ...string) {
	t.Helper()
	if ok, why := f.MeshHas(command...); !ok {
		t.Skipf("skipping: %s", why)
	}
}
