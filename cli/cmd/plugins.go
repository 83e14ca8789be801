package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/conduit-mesh/conduit/cli/healthcheck"
	"github.com/conduit-mesh/conduit/cli/render"
	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	"github.com/conduit-mesh/conduit/pkg/version"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// EnvLogLevel sets the level of mesh's own log (and of its plugins' logs),
// written to stderr: debug, info, warn (default) or error.
const EnvLogLevel = "MESH_LOG_LEVEL"

// cliLogger is the logger of the CLI and of the plugins it runs.
func cliLogger(w io.Writer) *slog.Logger {
	level, err := logging.ParseLevel(os.Getenv(EnvLogLevel))
	if err != nil || os.Getenv(EnvLogLevel) == "" {
		level = slog.LevelWarn
	}
	return logging.New(w, "mesh", level, "text")
}

// newPluginHost returns the host that finds and runs plugins for o.
func newPluginHost(o *Options) *pluginhost.Host {
	h := pluginhost.NewHost(cliLogger(o.Err), version.Version)
	h.Launch.Stray = o.Err // what a plugin writes to os.Stdout/os.Stderr by mistake
	h.ControlPlaneNamespace = o.ControlPlaneNamespace
	return h
}

func (o *Options) kubeFlags() sdk.KubeFlags {
	return sdk.KubeFlags{Kubeconfig: o.Kubeconfig, Context: o.Context, Namespace: o.Namespace, ConduitNamespace: o.ControlPlaneNamespace}
}

// RunPlugin runs `mesh <name> args...` with the plugin mesh-<name> when
// args name no built-in command. handled is false when cobra should run
// args itself (a built-in command, help, a flag error before the name).
func RunPlugin(ctx context.Context, o *Options, root *cobra.Command, args []string) (code int, handled bool) {
	fs := pflag.NewFlagSet("mesh", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.AddFlagSet(root.PersistentFlags())
	fs.SetInterspersed(false)
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		return 0, false
	}
	name := fs.Arg(0)
	if isBuiltin(root, name) || !pluginhost.ValidName(name) {
		return 0, false
	}
	rest, err := extractKubeFlags(fs, fs.Args()[1:])
	if err != nil {
		fmt.Fprintf(o.Err, "Error: %v\n", err)
		return 1, true
	}
	h := newPluginHost(o)
	path, err := h.Finder.Find(name)
	if errors.Is(err, pluginhost.ErrNotFound) {
		fmt.Fprintf(o.Err, "Error: unknown command %q for \"mesh\": it is no built-in command, and no plugin %s%s is in $%s, ~/.conduit/plugins or $PATH\n"+
			"Run 'mesh --help' for the commands, and 'mesh extensions list' for the extensions installed in the cluster.\n",
			name, pluginhost.BinaryPrefix, name, pluginhost.EnvPluginsDir)
		return 1, true
	}
	if err != nil {
		fmt.Fprintf(o.Err, "Error: %v\n", err)
		return 1, true
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, err := pluginhost.Launch(ctx, path, h.Launch)
	if err != nil {
		fmt.Fprintf(o.Err, "Error: %v\n", err)
		return 1, true
	}
	defer p.Close() // mesh stops its plugin when it exits
	code, err = runPluginCommand(ctx, o, p, rest)
	if err != nil {
		fmt.Fprintf(o.Err, "Error: %s: %v\n", name, err)
		if code == 0 {
			code = 1
		}
	}
	return code, true
}

func isBuiltin(root *cobra.Command, name string) bool {
	switch name {
	case "help", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
		return true
	}
	for _, c := range root.Commands() {
		if c.Name() == name || slices.Contains(c.Aliases, name) {
			return true
		}
	}
	return false
}

// extractKubeFlags removes mesh's persistent flags (--kubeconfig, --context,
// -n/--namespace, --conduit-namespace) from a plugin's arguments, wherever
// they are, setting them in fs; arguments after "--" are left alone.
func extractKubeFlags(fs *pflag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(rest, args[i:]...), nil
		}
		var f *pflag.Flag
		var value string
		hasValue := false
		switch {
		case strings.HasPrefix(a, "--"):
			n, v, ok := strings.Cut(a[2:], "=")
			f, value, hasValue = fs.Lookup(n), v, ok
		case len(a) >= 2 && a[0] == '-':
			f = fs.ShorthandLookup(a[1:2])
			if len(a) > 2 {
				value, hasValue = strings.TrimPrefix(a[2:], "="), true
			}
		}
		if f == nil {
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag %s needs a value", a)
			}
			i++
			value = args[i]
		}
		if err := fs.Set(f.Name, value); err != nil {
			return nil, fmt.Errorf("flag %s: %w", a, err)
		}
	}
	return rest, nil
}

// runPluginCommand dispatches: install, uninstall and check are the host's
// when the plugin declares them; anything else goes to its commands.
func runPluginCommand(ctx context.Context, o *Options, p *pluginhost.Plugin, args []string) (int, error) {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch {
	case (sub == "install" || sub == "uninstall") && p.Info.Has(client.Install):
		return 0, pluginInstall(ctx, o, p, sub, args[1:])
	case sub == "check" && p.Info.Has(client.Checks):
		return pluginCheck(ctx, o, p, args[1:])
	case p.Info.Has(client.Commands):
		return p.Run(ctx, args, o.kubeFlags(), client.Stdio{In: o.In, Out: o.Out, Err: o.Err, OutIsTerminal: isTerminal(o.Out)})
	}
	return pluginUsage(o, p.Info, sub)
}

// pluginUsage answers `mesh <name> [sub]` for an extension that serves no
// commands of its own: its usage, on stdout when asked for (no sub, help,
// -h, --help), else on stderr with an error.
func pluginUsage(o *Options, info pluginhost.Info, sub string) (int, error) {
	if sub == "" || sub == "help" || sub == "--help" || sub == "-h" {
		printPluginUsage(o.Out, info) // asked for: on stdout, like every command's help
		return 0, nil
	}
	printPluginUsage(o.Err, info)
	return 1, fmt.Errorf("unknown command %q (see 'mesh %s --help')", sub, info.Name)
}

func printPluginUsage(w io.Writer, info pluginhost.Info) {
	fmt.Fprintf(w, "%s %s — %s\n\nUsage:\n", info.Name, info.Version, info.Description)
	if info.Has(client.Install) {
		fmt.Fprintf(w, "  mesh %s install [--set k=v] [-f values.yaml] | kubectl apply -f -\n", info.Name)
		fmt.Fprintf(w, "  mesh %s uninstall | kubectl delete -f -\n", info.Name)
	}
	if info.Has(client.Checks) {
		flags := ""
		for _, f := range info.CheckFlags {
			flags += "[--" + f.Name + " VALUE] "
		}
		fmt.Fprintf(w, "  mesh %s check %s[-o table|short|json]\n", info.Name, flags)
	}
	for _, c := range info.Commands {
		fmt.Fprintf(w, "  mesh %s %-12s %s\n", info.Name, c.Name, c.Short)
	}
}

// printPluginFlags ends the help of an extension command the host runs:
// its flags, and where mesh's own are described.
func printPluginFlags(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "Flags:\n%s\nGlobal flags (--kubeconfig, --context, -n/--namespace, --conduit-namespace): see mesh --help.\n", fs.FlagUsages())
}

func pluginInstall(ctx context.Context, o *Options, p *pluginhost.Plugin, sub string, args []string) error {
	fs := pflag.NewFlagSet(sub, pflag.ContinueOnError)
	fs.SetOutput(o.Err)
	var ov render.Overrides
	var files []string
	fs.StringArrayVarP(&files, "values", "f", nil, "values file (repeatable)")
	fs.StringArrayVar(&ov.Set, "set", nil, "set a value, e.g. --set replicas=2 (repeatable)")
	fs.StringArrayVar(&ov.SetString, "set-string", nil, "set a string value (repeatable)")
	fs.Usage = func() {
		if sub == "install" {
			fmt.Fprintf(o.Out, "Print the manifests that install the %s extension, for kubectl apply.\n\nUsage:\n  mesh %s install [flags] | kubectl apply -f -\n\n", p.Info.Name, p.Info.Name)
		} else {
			fmt.Fprintf(o.Out, "Print the manifests of the %s extension's resources, for kubectl delete.\n\nUsage:\n  mesh %s uninstall [flags] | kubectl delete -f -\n\n", p.Info.Name, p.Info.Name)
		}
		printPluginFlags(o.Out, fs)
	}
	if err := fs.Parse(args); errors.Is(err, pflag.ErrHelp) {
		return nil
	} else if err != nil {
		return fmt.Errorf("%s: %w (see 'mesh %s %s --help')", sub, err, p.Info.Name, sub)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", sub, fs.Args())
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("%s: values file: %w", sub, err)
		}
		ov.Files = append(ov.Files, b)
	}
	vals, err := ov.Merge()
	if err != nil {
		return fmt.Errorf("%s: %w", sub, err)
	}
	req := sdk.InstallRequest{Values: vals, Kube: o.kubeFlags()}
	var out []byte
	if sub == "install" {
		out, err = p.Install(ctx, req)
	} else {
		out, err = p.Uninstall(ctx, req)
	}
	if err != nil {
		return err
	}
	if _, err = o.Out.Write(out); err != nil {
		return err
	}
	// The manifests advertise hooks: say that they run only once allowed.
	if sub == "install" && (bytes.Contains(out, []byte(pluginhost.AnnotationInjectorHook+":")) || bytes.Contains(out, []byte(pluginhost.AnnotationDestinationHook+":"))) {
		fmt.Fprintf(o.Err, "Once applied, the control plane runs the hooks of %s only when allowed: mesh extensions allow %s\n", p.Info.Name, p.Info.Name)
	}
	return nil
}

// checkFlagRE is the shape of an extension's check flag name.
var checkFlagRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// reservedCheckFlags are the flags of `mesh <name> check` that are mesh's:
// check's own and the global ones (extractKubeFlags takes those first).
var reservedCheckFlags = []string{"output", "help", "kubeconfig", "context", "namespace", "conduit-namespace"}

func pluginCheck(ctx context.Context, o *Options, p *pluginhost.Plugin, args []string) (int, error) {
	fs := pflag.NewFlagSet("check", pflag.ContinueOnError)
	fs.SetOutput(o.Err)
	co := checkOptions{}
	fs.StringVarP(&co.output, "output", "o", healthcheck.FormatTable, "output format: table, short or json")
	// The extension's own flags: their values are sent to its check.
	values := map[string]*string{}
	for _, f := range p.Info.CheckFlags {
		if !checkFlagRE.MatchString(f.Name) || slices.Contains(reservedCheckFlags, f.Name) || fs.Lookup(f.Name) != nil {
			return 1, fmt.Errorf("check: the extension declares the check flag %q: a flag name is lowercase letters, digits and dashes, declared once, and not one of mesh's (%s)",
				f.Name, strings.Join(reservedCheckFlags, ", "))
		}
		values[f.Name] = fs.String(f.Name, "", f.Usage)
	}
	fs.Usage = func() {
		fmt.Fprintf(o.Out, "Check the %s extension in the cluster: one line per check, and exit status 1 when one fails.\n\nUsage:\n  mesh %s check [flags]\n\n", p.Info.Name, p.Info.Name)
		printPluginFlags(o.Out, fs)
	}
	if err := fs.Parse(args); errors.Is(err, pflag.ErrHelp) {
		return 0, nil
	} else if err != nil {
		return 1, fmt.Errorf("check: %w (see 'mesh %s check --help')", err, p.Info.Name)
	}
	if fs.NArg() > 0 {
		return 1, fmt.Errorf("check takes no arguments, got %q", fs.Args())
	}
	switch co.output {
	case healthcheck.FormatTable, healthcheck.FormatShort, healthcheck.FormatJSON:
	default:
		return 1, fmt.Errorf("check: unknown output format %q (accepted: table, short, json)", co.output)
	}
	var set map[string]string
	fs.Visit(func(f *pflag.Flag) {
		if v, ok := values[f.Name]; ok {
			if set == nil {
				set = map[string]string{}
			}
			set[f.Name] = *v
		}
	})
	cats, err := p.CheckWithFlags(ctx, o.kubeFlags(), set)
	if !runChecks(ctx, o, pluginCheckCategories(p.Info.Name, cats, err), co).Success {
		return 1, nil
	}
	return 0, nil
}

// pluginCheckCategories are an extension's check results, or, when its
// checks could not run (err), one failed check that says so: printed in
// the format asked for, so that -o json still prints JSON.
func pluginCheckCategories(name string, cats []sdk.CheckCategory, err error) []healthcheck.Category {
	if err == nil {
		return healthcheckCategories(cats)
	}
	return []healthcheck.Category{healthcheck.Static{CategoryName: name, List: []healthcheck.Check{{
		Description: "the extension's checks run",
		Hint:        "check that the mesh-" + name + " plugin matches the extension in the cluster (mesh extensions list)",
		Run:         func(context.Context) error { return err },
	}}}}
}

// healthcheckCategories turns an extension's check results into categories
// of the core's check runner, so that they print and merge like the core's.
func healthcheckCategories(cats []sdk.CheckCategory) []healthcheck.Category {
	out := make([]healthcheck.Category, 0, len(cats))
	for _, c := range cats {
		hc := healthcheck.Static{CategoryName: c.Name}
		for _, r := range c.Checks {
			hc.List = append(hc.List, healthcheck.Check{Description: r.Description, Hint: r.Hint, Run: resultFunc(r)})
		}
		out = append(out, hc)
	}
	return out
}

func resultFunc(r sdk.CheckResult) func(context.Context) error {
	msg := r.Error
	if msg == "" {
		msg = "reported by the extension"
	}
	return func(context.Context) error {
		switch r.Status {
		case sdk.StatusOK:
			return nil
		case sdk.StatusSkipped:
			return healthcheck.Skip(msg)
		case sdk.StatusWarn:
			return healthcheck.Warning(errors.New(msg))
		}
		return errors.New(msg)
	}
}

// extensionCheckCategories runs the checks of the extensions installed in
// the cluster for `mesh check` (the hook ExtraCheckCategories of check.go).
func extensionCheckCategories(ctx context.Context, o *Options) []healthcheck.Category {
	k, err := o.Kube()
	if err != nil {
		return nil // the kubernetes-api category reports it
	}
	cats, err := newPluginHost(o).ExtensionChecks(ctx, k.Client, o.kubeFlags())
	if err != nil {
		return []healthcheck.Category{healthcheck.Static{CategoryName: "extensions", List: []healthcheck.Check{{
			Description: "can list the extensions installed in the cluster",
			Hint:        "check that you may list namespaces",
			Run:         func(context.Context) error { return err },
		}}}}
	}
	return healthcheckCategories(cats)
}

func init() {
	if ExtraCheckCategories == nil {
		ExtraCheckCategories = extensionCheckCategories
	}
}
