package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

// GreetingAnnotation drives the injector hook.
const GreetingAnnotation = "hello.conduit.dev/greeting"

// log reaches the mesh's log under the plugin's name (mesh -v shows it).
var log = sdk.Logger()

type hello struct{}

func (hello) Info() sdk.Info {
	return sdk.Info{Name: "hello", Version: version, Description: "example extension: greetings, checks and an injector hook"}
}

func (hello) Commands() []sdk.Command {
	return []sdk.Command{
		{Name: "greet", Short: "print a greeting"},
		{Name: "echo", Short: "copy stdin to stdout"},
		{Name: "exit", Short: "exit with the given status"},
	}
}

func (hello) Run(ctx context.Context, inv *sdk.Invocation) error {
	if len(inv.Args) == 0 {
		fmt.Fprintln(inv.Stderr, "usage: mesh hello greet [--shout] [name] | echo | exit <code>")
		return sdk.Exit(2)
	}
	switch inv.Args[0] {
	case "greet":
		fs := flag.NewFlagSet("greet", flag.ContinueOnError)
		fs.SetOutput(inv.Stderr)
		shout := fs.Bool("shout", false, "greet loudly")
		if err := fs.Parse(inv.Args[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil // --help asked for the usage, printed above
			}
			return sdk.Exit(2)
		}
		name := "world"
		if fs.NArg() > 0 {
			name = fs.Arg(0)
		}
		punct := "."
		if *shout {
			punct = "!"
		}
		ns := inv.Kube.Namespace
		if ns == "" {
			ns = "default"
		}
		log.Debug("greeting", "name", name)
		fmt.Fprintf(inv.Stdout, "Hello, %s%s (namespace %s)\n", name, punct, ns)
		return nil
	case "echo":
		_, err := io.Copy(inv.Stdout, inv.Stdin)
		return err
	case "exit":
		if len(inv.Args) != 2 {
			return errors.New("exit takes one argument, the status")
		}
		code, err := strconv.Atoi(inv.Args[1])
		if err != nil {
			return fmt.Errorf("exit status %q is not a number", inv.Args[1])
		}
		fmt.Fprintf(inv.Stderr, "exiting with %d\n", code)
		return sdk.Exit(code)
	}
	return fmt.Errorf("unknown command %q (commands: greet, echo, exit)", inv.Args[0])
}

func (hello) Check(ctx context.Context, kube sdk.KubeFlags) ([]sdk.CheckCategory, error) {
	return []sdk.CheckCategory{{
		Name: "hello",
		Checks: []sdk.CheckResult{
			{Description: "hello can greet", Status: sdk.StatusOK},
			{Description: "hello has a friend", Status: sdk.StatusWarn, Error: "hello has no friend yet", Hint: "hello is an example: write your own extension (docs/extensions.md)"},
		},
	}}, nil
}

// pod is the part of a core/v1 Pod the hook reads.
type pod struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Containers []struct {
			Name string            `json:"name"`
			Env  []json.RawMessage `json:"env"`
		} `json:"containers"`
	} `json:"spec"`
}

func (hello) PatchPod(ctx context.Context, req *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
	var p pod
	if err := json.Unmarshal(req.Pod, &p); err != nil {
		return nil, fmt.Errorf("hello: decode pod: %w", err)
	}
	greeting, ok := p.Metadata.Annotations[GreetingAnnotation]
	if !ok {
		return nil, nil
	}
	env := map[string]string{"name": "HELLO_GREETING", "value": greeting}
	var ops []sdk.PatchOp
	// The pod already has the proxy (at req.ProxyPath): leave it alone.
	for i, c := range p.Spec.Containers {
		path := fmt.Sprintf("/spec/containers/%d", i)
		if path == req.ProxyPath {
			continue
		}
		if c.Env == nil {
			ops = append(ops, sdk.PatchOp{Op: "add", Path: path + "/env", Value: []any{env}})
		} else {
			ops = append(ops, sdk.PatchOp{Op: "add", Path: path + "/env/-", Value: env})
		}
	}
	return ops, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-hooks" {
		if err := serveHooks(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "mesh-hello:", err)
			os.Exit(1)
		}
		return
	}
	sdk.Serve(hello{})
}

// serveHooks runs the in-cluster hook server (the chart's Deployment): the
// injector fetches this binary from the address the namespace advertises and,
// once the allow-list names its SHA-256, runs it as a plugin (main's default
// branch) and calls PatchPod.
func serveHooks(args []string) error {
	fs := flag.NewFlagSet("serve-hooks", flag.ContinueOnError)
	addr := fs.String("addr", ":8089", "address of the gRPC hook server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := sdk.NewLogger(os.Stderr, slog.LevelInfo)
	log.Info("serving hooks", "addr", *addr, "version", version)
	err := sdk.ServeHooks(ctx, *addr, hello{})
	log.Info("stopped")
	return err
}
