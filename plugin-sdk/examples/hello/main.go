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
	"strings"
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

// commands are mesh hello's commands: what each takes (its usage line) and
// does. Commands, the help and the usage errors are written from them.
var commands = []struct{ name, args, short string }{
	{"greet", "[--shout] [NAME]", "print a greeting"},
	{"echo", "", "copy stdin to stdout"},
	{"exit", "CODE", "exit with the given status"},
}

func (hello) Commands() []sdk.Command {
	out := make([]sdk.Command, 0, len(commands))
	for _, c := range commands {
		out = append(out, sdk.Command{Name: c.name, Short: c.short})
	}
	return out
}

// Run runs `mesh hello args...`. Usage errors follow mesh's convention
// (docs/cli.md): an error, which the SDK prints as "Error: ..." with exit
// status 1, that names the command and what it takes; help, asked for, is
// printed on stdout with status 0.
func (hello) Run(ctx context.Context, inv *sdk.Invocation) error {
	if len(inv.Args) == 0 || isHelp(inv.Args[0]) {
		printUsage(inv.Stdout)
		return nil
	}
	var err error
	switch name, args := inv.Args[0], inv.Args[1:]; name {
	case "greet":
		err = greet(inv, args)
	case "echo":
		err = echo(inv, args)
	case "exit":
		err = exit(inv, args)
	default:
		names := make([]string, len(commands))
		for i, c := range commands {
			names[i] = c.name
		}
		return fmt.Errorf("mesh hello: unknown command %q (commands: %s; see 'mesh hello --help')", name, strings.Join(names, ", "))
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // the usage asked for is printed
	}
	return err
}

func greet(inv *sdk.Invocation, args []string) error {
	fs := flag.NewFlagSet("greet", flag.ContinueOnError)
	shout := fs.Bool("shout", false, "greet loudly")
	args, err := parseFlags(inv.Stdout, fs, args)
	if err != nil {
		return err
	}
	if len(args) > 1 {
		return argsError("greet", "takes at most one NAME", args)
	}
	name := "world"
	if len(args) == 1 {
		name = args[0]
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
}

func echo(inv *sdk.Invocation, args []string) error {
	args, err := parseFlags(inv.Stdout, flag.NewFlagSet("echo", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return argsError("echo", "takes no arguments", args)
	}
	_, err = io.Copy(inv.Stdout, inv.Stdin)
	return err
}

func exit(inv *sdk.Invocation, args []string) error {
	args, err := parseFlags(inv.Stdout, flag.NewFlagSet("exit", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return argsError("exit", "takes one CODE", args)
	}
	code, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("mesh hello exit: CODE %q is not a number (usage: %s)", args[0], usageLine("exit"))
	}
	fmt.Fprintf(inv.Stderr, "exiting with %d\n", code)
	return sdk.Exit(code)
}

func isHelp(arg string) bool {
	return arg == "help" || arg == "--help" || arg == "-h" || arg == "-help"
}

// usageLine is how command name is run, e.g. "mesh hello exit CODE".
func usageLine(name string) string {
	for _, c := range commands {
		if c.name == name && c.args != "" {
			return "mesh hello " + name + " " + c.args
		}
	}
	return "mesh hello " + name
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, "hello is an example extension of the Conduit mesh.\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-35s %s\n", usageLine(c.name), c.short)
	}
	fmt.Fprint(w, "\nmesh serves install, uninstall and check (mesh hello check --help).\n"+
		"Run 'mesh hello COMMAND --help' for a command's flags.\n")
}

// parseFlags parses the flags of the command fs is named after and returns
// its arguments. A flag error names the command; --help prints its usage on
// w (stdout) and returns flag.ErrHelp. The flag package prints neither: it
// would print both on stderr.
func parseFlags(w io.Writer, fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	name := fs.Name()
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		for _, c := range commands {
			if c.name == name {
				fmt.Fprintf(w, "mesh hello %s: %s.\n\nUsage:\n  %s\n", name, c.short, usageLine(name))
			}
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(w, "\nFlags:\n")
			fs.SetOutput(w)
			fs.PrintDefaults()
		}
		return nil, flag.ErrHelp
	}
	if err != nil {
		return nil, fmt.Errorf("mesh hello %s: %w (see 'mesh hello %s --help')", name, err, name)
	}
	return fs.Args(), nil
}

// argsError is a wrong number of arguments to command name.
func argsError(name, takes string, args []string) error {
	return fmt.Errorf("mesh hello %s: %s, got %q (usage: %s)", name, takes, args, usageLine(name))
}

// Check runs the checks of `mesh check`, which sets no check flags.
func (h hello) Check(ctx context.Context, kube sdk.KubeFlags) ([]sdk.CheckCategory, error) {
	return h.CheckWithFlags(ctx, kube, nil)
}

// CheckFlags are the flags of `mesh hello check` besides mesh's own.
func (hello) CheckFlags() []sdk.CheckFlag {
	return []sdk.CheckFlag{{Name: "friend", Usage: "name of hello's friend"}}
}

// CheckWithFlags runs the checks of `mesh hello check [--friend NAME]`.
func (hello) CheckWithFlags(ctx context.Context, kube sdk.KubeFlags, flags map[string]string) ([]sdk.CheckCategory, error) {
	friend := sdk.CheckResult{Description: "hello has a friend", Status: sdk.StatusWarn, Error: "hello has no friend yet",
		Hint: "hello is an example: write your own extension (docs/extensions.md)"}
	if name := flags["friend"]; name != "" {
		friend = sdk.CheckResult{Description: fmt.Sprintf("hello has a friend (%s)", name), Status: sdk.StatusOK}
	}
	return []sdk.CheckCategory{{
		Name:   "hello",
		Checks: []sdk.CheckResult{{Description: "hello can greet", Status: sdk.StatusOK}, friend},
	}}, nil
}

var _ sdk.FlagChecker = hello{}

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
