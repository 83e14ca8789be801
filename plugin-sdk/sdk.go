package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
)

// Version is the version of this SDK, reported to the host in Info.
const Version = "0.1.0"

// Protocol constants shared with the host (the mesh). They change only with a
// new protocol version.
const (
	// APIVersion is the protocol this SDK speaks.
	APIVersion = "conduit.plugin.v1"
	// ProtocolVersion is the go-plugin protocol version of APIVersion.
	ProtocolVersion = 1
	// PluginName is the name of the plugin in go-plugin's plugin set.
	PluginName = "extension"
	// MagicCookieKey and MagicCookieValue are go-plugin's handshake: the host
	// sets the variable, so a plugin run by hand says how to run it instead.
	MagicCookieKey   = "CONDUIT_PLUGIN"
	MagicCookieValue = "a3f1c9e2-conduit-plugin-v1"
)

// Info describes an extension.
type Info struct {
	// Name is the extension's name, a lowercase DNS label: the binary is
	// mesh-<Name>, the CLI runs it as `mesh <Name>`, and its namespace is
	// labelled conduit.dev/extension=<Name>.
	Name string
	// Version is the extension's semantic version, e.g. "1.2.0".
	Version string
	// Description is one line shown by `mesh extensions list`.
	Description string
}

// Extension is what every plugin implements. The value passed to Serve may
// also implement any of Commander, Installer, Checker (or FlagChecker),
// InjectorHook and DestinationHook.
type Extension interface {
	Info() Info
}

// KubeFlags are the user's cluster selection, passed through from `mesh`'s
// flags. Empty fields mean the defaults ($KUBECONFIG, current context, the
// context's namespace, "conduit").
type KubeFlags struct {
	Kubeconfig       string
	Context          string
	Namespace        string
	ConduitNamespace string
}

// Command describes one CLI subcommand of a Commander, for help output.
type Command struct {
	Name  string
	Short string
}

// Invocation is one run of `mesh <name> args...`.
type Invocation struct {
	// Args are the arguments after `mesh <name>`.
	Args []string
	Kube KubeFlags
	// Stdin reads the user's standard input; the host forwards it only once
	// the command reads it.
	Stdin io.Reader
	// Stdout and Stderr stream to the user's terminal.
	Stdout, Stderr io.Writer
	// StdoutIsTerminal tells whether the user's stdout is a terminal.
	StdoutIsTerminal bool
}

// Commander serves the extension's CLI subcommands. Run's error becomes the
// exit status: nil is 0, an error made by Exit(code) is code, and any other
// error is printed to stderr as "Error: ..." with status 1.
//
// Follow mesh's convention for usage errors (an unknown command, flag or
// argument): return an error that names the command and what it takes, e.g.
// "mesh hello exit: takes one CODE, got [] (usage: mesh hello exit CODE)",
// for status 1; print help that is asked for on Stdout and return nil.
//
// `mesh <name> install`, `uninstall` and `check` are handled by the host
// when the extension is an Installer or a Checker: do not define them here.
type Commander interface {
	Commands() []Command
	Run(ctx context.Context, inv *Invocation) error
}

// ExitError ends a command with a given exit status, printing nothing more.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Exit returns an error that makes a Commander's Run exit with code.
func Exit(code int) error { return &ExitError{Code: code} }

// InstallRequest asks for the manifests of the extension.
type InstallRequest struct {
	// Values are Helm values (from `--set` and `-f`), possibly empty.
	Values map[string]any
	// Namespace to install into; empty means "conduit-<name>".
	Namespace string
	Kube      KubeFlags
}

// Installer renders the extension's manifests, usually from the Helm chart
// embedded in the binary (see the chart sub-package). The output is
// multi-document YAML for `kubectl apply -f -` (Install) or
// `kubectl delete -f -` (Uninstall).
type Installer interface {
	Install(ctx context.Context, req InstallRequest) ([]byte, error)
	Uninstall(ctx context.Context, req InstallRequest) ([]byte, error)
}

// CheckStatus is the outcome of one check.
type CheckStatus string

// Check outcomes, as `mesh check -o json` prints them (docs/check-json.md).
// A warning is shown but does not fail `mesh check`; an error fails it.
const (
	StatusOK      CheckStatus = "success"
	StatusWarn    CheckStatus = "warning"
	StatusFail    CheckStatus = "error"
	StatusSkipped CheckStatus = "skipped"
)

// CheckCategory is a group of checks, in the JSON shape of a category of
// `mesh check -o json`. Name it after the extension ("viz", "viz-data-plane")
// so that it does not collide with the core's categories.
type CheckCategory struct {
	Name   string        `json:"categoryName"`
	Checks []CheckResult `json:"checks"`
}

// CheckResult is one check.
type CheckResult struct {
	// Description says what must hold, e.g. "the metrics API is ready".
	Description string      `json:"description"`
	Status      CheckStatus `json:"result"`
	// Error says what went wrong, for a warning or an error.
	Error string `json:"error,omitempty"`
	// Hint says what to do about a warning or an error.
	Hint string `json:"hint,omitempty"`
}

// Checker runs the extension's health checks for `mesh check`. A check that
// fails is a result with StatusFail; an error means the checks could not run.
type Checker interface {
	Check(ctx context.Context, kube KubeFlags) ([]CheckCategory, error)
}

// CheckFlag is a flag of `mesh <name> check` that takes a string value:
// `--<Name> VALUE`.
type CheckFlag struct {
	// Name is the flag's long name without dashes, e.g. "viz-namespace":
	// lowercase letters, digits and dashes. mesh's own flags (output, help,
	// kubeconfig, context, namespace, conduit-namespace) are reserved.
	Name string
	// Usage is one line for `mesh <name> check --help`.
	Usage string
}

// FlagChecker is a Checker whose `mesh <name> check` takes flags of its
// own. The host adds CheckFlags to check's flags (its help lists them) and
// calls CheckWithFlags with those the user set, by name; flags not set are
// absent from the map. `mesh check`, which runs every extension's checks,
// sets none. A host older than this interface calls Check and refuses the
// flags as unknown.
type FlagChecker interface {
	Checker
	CheckFlags() []CheckFlag
	CheckWithFlags(ctx context.Context, kube KubeFlags, flags map[string]string) ([]CheckCategory, error)
}

// PodPatchRequest is a pod the injector is admitting.
type PodPatchRequest struct {
	// Pod is the JSON of the core/v1 Pod being injected: the core's patch
	// (the proxy container) and the patches of the hooks called before this
	// one are applied. The hook's operations apply to this pod.
	Pod []byte
	// Namespace of the pod.
	Namespace string
	// NamespaceLabels and NamespaceAnnotations are those of the pod's
	// namespace, when the injector passes them.
	NamespaceLabels      map[string]string
	NamespaceAnnotations map[string]string
	// ProxyPath is the JSON pointer of the proxy container in Pod
	// ("/spec/initContainers/1" for a native sidecar, else "/spec/containers/0");
	// empty if the caller did not say.
	ProxyPath string
}

// PatchOp is one RFC 6902 JSON patch operation: Op is add, remove, replace
// or test (move and copy are refused, as they could reach into what the core
// or other extensions added).
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// MarshalJSON leaves out the value of a "remove", and keeps it (even when
// zero) for the other operations.
func (p PatchOp) MarshalJSON() ([]byte, error) {
	if p.Op == "remove" {
		return json.Marshal(struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}{p.Op, p.Path})
	}
	type plain PatchOp
	return json.Marshal(plain(p))
}

// InjectorHook contributes JSON patch operations, against the pod in the
// request, to pods being injected (only pods that get the proxy). It must be fast: the injector calls it
// with a short deadline and admits the pod without the patch on any error.
type InjectorHook interface {
	PatchPod(ctx context.Context, req *PodPatchRequest) ([]PatchOp, error)
}

// Endpoint is an endpoint the destination service is about to send.
type Endpoint struct {
	// Address is "ip:port".
	Address      string
	PodName      string
	PodNamespace string
	PodLabels    map[string]string
}

// DestinationHook adds metadata to endpoints. The result maps an endpoint's
// Address to its extra metadata; endpoints not in it get none. Like
// InjectorHook it runs under a short deadline and errors are ignored.
type DestinationHook interface {
	AnnotateEndpoints(ctx context.Context, authority string, endpoints []Endpoint) (map[string]map[string]string, error)
}

var nameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$`)
var semverRE = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// Validate reports what is wrong with an Info.
func (i Info) Validate() error {
	var errs []error
	if !nameRE.MatchString(i.Name) {
		errs = append(errs, fmt.Errorf("name %q must be a lowercase DNS label of at most 40 characters (it names the binary mesh-<name>)", i.Name))
	}
	if !semverRE.MatchString(i.Version) {
		errs = append(errs, fmt.Errorf("version %q must be a semantic version such as 1.2.0", i.Version))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("plugin-sdk: invalid Info: %w", err)
	}
	return nil
}

// EscapePointer escapes s for use as one segment of a JSON pointer in a
// PatchOp path, e.g. an annotation key: "/metadata/annotations/" +
// EscapePointer("conduit.dev/tap").
func EscapePointer(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '~':
			out = append(out, '~', '0')
		case '/':
			out = append(out, '~', '1')
		default:
			out = append(out, s[i])
		}
	}
	return string(out)
}
