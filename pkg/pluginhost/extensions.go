package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
	"k8s.io/client-go/kubernetes"
)

// Host finds and runs plugins on the user's machine for the CLI.
type Host struct {
	Finder Finder
	Launch LaunchOptions
	// CheckTimeout bounds each extension's checks (default 2m).
	CheckTimeout time.Duration
	// ControlPlaneNamespace holds the allow-list (default "conduit").
	ControlPlaneNamespace string
}

// allowList reads the allow-list of the control plane in ns (or the Host's).
func (h *Host) allowList(ctx context.Context, cs kubernetes.Interface, ns string) AllowList {
	if ns == "" {
		ns = h.ControlPlaneNamespace
	}
	if ns == "" {
		ns = "conduit"
	}
	al, _, err := ReadAllowList(ctx, cs, ns)
	if err != nil {
		return nil
	}
	return al
}

// HookStatus says whether the control plane runs the hooks of an extension
// that serves some: "allowed" or "not allowed" ("" when it serves none, or
// the allow-list cannot be read).
func hookStatus(ce ClusterExtension, al AllowList) string {
	if al == nil || (ce.InjectorHook == "" && ce.DestinationHook == "") {
		return ""
	}
	if _, ok := al[ce.Name]; ok {
		return "allowed"
	}
	return "not allowed"
}

// NotAllowedWarning says that an extension's hooks do not run, and how to
// allow them.
func NotAllowedWarning(name string) string {
	return fmt.Sprintf("the extension %q serves control-plane hooks, but the control plane does not run them: it is not in the allow-list "+
		"(ConfigMap %s); run `mesh extensions allow %s` to pin its hook binary and run them", name, AllowListName, name)
}

// NewHost returns a Host with the default search path, logging to logger.
func NewHost(logger *slog.Logger, hostVersion string) *Host {
	return &Host{Finder: DefaultFinder(), Launch: LaunchOptions{Logger: logger, HostVersion: hostVersion}}
}

// Extension is one row of `mesh extensions list`: an extension installed in
// the cluster, on disk, or both.
type Extension struct {
	Name string `json:"name"`
	// Namespace is where it is installed ("" if not in the cluster).
	Namespace      string `json:"namespace,omitempty"`
	ClusterVersion string `json:"clusterVersion,omitempty"`
	// Plugin is the path of mesh-<name> ("" if not on disk).
	Plugin        string              `json:"plugin,omitempty"`
	PluginVersion string              `json:"pluginVersion,omitempty"`
	SDKVersion    string              `json:"sdkVersion,omitempty"`
	Description   string              `json:"description,omitempty"`
	Capabilities  []client.Capability `json:"capabilities,omitempty"`
	// Hooks is "allowed" or "not allowed" for an installed extension that
	// serves control-plane hooks (see `mesh extensions allow`); the CLI
	// refines "allowed" into "allowed, running" or "allowed, not running"
	// from what the control plane reports.
	Hooks    string   `json:"hooks,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// MissingPluginWarning says that an extension installed in the cluster has
// no plugin on this machine, and how to get it.
func MissingPluginWarning(name, namespace string) string {
	return fmt.Sprintf("the extension %q is installed in the cluster (namespace %s) but its plugin %s%s is not on this machine: "+
		"build it with `make build` (it writes bin/%s%s) or download it, and put it in $%s, ~/.conduit/plugins or $PATH",
		name, namespace, BinaryPrefix, name, BinaryPrefix, name, EnvPluginsDir)
}

// List returns the extensions installed in the cluster (cs may be nil to
// list only those on disk) and the plugins on disk, joined by name. A
// plugin that does not start is listed with a warning.
func (h *Host) List(ctx context.Context, cs kubernetes.Interface) ([]Extension, error) {
	var installed []ClusterExtension
	var al AllowList
	if cs != nil {
		var err error
		installed, err = ClusterExtensions(ctx, cs)
		if err != nil {
			return nil, err
		}
		al = h.allowList(ctx, cs, "")
	}
	rows := map[string]*Extension{}
	var order []string
	row := func(name string) *Extension {
		if r, ok := rows[name]; ok {
			return r
		}
		rows[name] = &Extension{Name: name}
		order = append(order, name)
		return rows[name]
	}
	for _, ce := range installed {
		r := row(ce.Name)
		if r.Namespace != "" {
			r.Warnings = append(r.Warnings, fmt.Sprintf("also installed in namespace %s", ce.Namespace))
			continue
		}
		r.Namespace, r.ClusterVersion = ce.Namespace, ce.Version
		if r.Hooks = hookStatus(ce, al); r.Hooks == "not allowed" {
			r.Warnings = append(r.Warnings, NotAllowedWarning(ce.Name))
		}
	}
	for _, f := range h.Finder.All() {
		r := row(f.Name)
		r.Plugin = f.Path
		if f.Err != nil {
			r.Warnings = append(r.Warnings, f.Err.Error())
			continue
		}
		p, err := Launch(ctx, f.Path, h.Launch)
		if err != nil {
			r.Warnings = append(r.Warnings, err.Error())
			continue
		}
		r.PluginVersion, r.SDKVersion, r.Description, r.Capabilities = p.Info.Version, p.Info.SDKVersion, p.Info.Description, p.Info.Capabilities
		p.Close()
	}
	out := make([]Extension, 0, len(order))
	slices.Sort(order)
	for _, name := range order {
		r := rows[name]
		if r.Namespace != "" && r.Plugin == "" {
			r.Warnings = append(r.Warnings, MissingPluginWarning(r.Name, r.Namespace))
		}
		if w := versionSkew(r.ClusterVersion, r.PluginVersion); w != "" {
			r.Warnings = append(r.Warnings, w)
		}
		out = append(out, *r)
	}
	return out, nil
}

func versionSkew(cluster, plugin string) string {
	if cluster == "" || plugin == "" || strings.TrimPrefix(cluster, "v") == strings.TrimPrefix(plugin, "v") {
		return ""
	}
	return fmt.Sprintf("the cluster runs version %s but the plugin is version %s: use the same version for both", cluster, plugin)
}

// ExtensionChecks runs the checks of every extension installed in the
// cluster with its plugin and returns their categories, in the JSON shape of
// `mesh check -o json`, for `mesh check` to append to the core's. Per
// extension, a category "<name>-extension" says whether its plugin is
// present (warn, with how to get it, if not), runs, and matches the
// installed version; the extension's own categories follow. An extension
// that does not implement checks contributes only that category. The error
// is non-nil only when the cluster cannot be listed.
func (h *Host) ExtensionChecks(ctx context.Context, cs kubernetes.Interface, kube sdk.KubeFlags) ([]sdk.CheckCategory, error) {
	installed, err := ClusterExtensions(ctx, cs)
	if err != nil {
		return nil, err
	}
	timeout := h.CheckTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	al := h.allowList(ctx, cs, kube.ConduitNamespace)
	var out []sdk.CheckCategory
	seen := map[string]bool{}
	for _, ce := range installed {
		if seen[ce.Name] {
			continue
		}
		seen[ce.Name] = true
		var hook *sdk.CheckResult
		switch hookStatus(ce, al) {
		case "allowed":
			hook = &sdk.CheckResult{Description: "control-plane hooks are allowed", Status: sdk.StatusOK}
		case "not allowed":
			hook = &sdk.CheckResult{Description: "control-plane hooks are allowed", Status: sdk.StatusWarn,
				Error: fmt.Sprintf("not in the allow-list (ConfigMap %s): the injector and destination do not run its hooks", AllowListName),
				Hint:  fmt.Sprintf("run `mesh extensions allow %s` (it pins the SHA-256 of the extension's hook binary)", ce.Name)}
		}
		out = append(out, h.checkOne(ctx, ce, kube, timeout, hook)...)
	}
	return out, nil
}

func (h *Host) checkOne(ctx context.Context, ce ClusterExtension, kube sdk.KubeFlags, timeout time.Duration, hook *sdk.CheckResult) []sdk.CheckCategory {
	cat := sdk.CheckCategory{Name: ce.Name + "-extension"}
	if hook != nil {
		cat.Checks = append(cat.Checks, *hook)
	}
	pluginCheck := fmt.Sprintf("%s%s plugin is on this machine", BinaryPrefix, ce.Name)
	path, err := h.Finder.Find(ce.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		cat.Checks = append(cat.Checks, sdk.CheckResult{Description: pluginCheck, Status: sdk.StatusFail,
			Error: err.Error(), Hint: fmt.Sprintf("make %s%s writable by you only, in a directory writable by you only (e.g. ~/.conduit/plugins)", BinaryPrefix, ce.Name)})
		return []sdk.CheckCategory{cat}
	}
	if err != nil {
		cat.Checks = append(cat.Checks, sdk.CheckResult{Description: pluginCheck, Status: sdk.StatusWarn,
			Error: fmt.Sprintf("no %s%s in $%s, ~/.conduit/plugins or $PATH", BinaryPrefix, ce.Name, EnvPluginsDir), Hint: MissingPluginWarning(ce.Name, ce.Namespace)})
		return []sdk.CheckCategory{cat}
	}
	cat.Checks = append(cat.Checks, sdk.CheckResult{Description: pluginCheck, Status: sdk.StatusOK})
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p, err := Launch(ctx, path, h.Launch)
	if err != nil {
		cat.Checks = append(cat.Checks, sdk.CheckResult{Description: fmt.Sprintf("%s%s plugin runs", BinaryPrefix, ce.Name), Status: sdk.StatusFail,
			Error: err.Error(), Hint: fmt.Sprintf("reinstall %s (%s) with a version built for this mesh", path, ce.Name)})
		return []sdk.CheckCategory{cat}
	}
	defer p.Close()
	verCheck := sdk.CheckResult{Description: fmt.Sprintf("%s%s plugin matches the installed version", BinaryPrefix, ce.Name), Status: sdk.StatusOK}
	if w := versionSkew(ce.Version, p.Info.Version); w != "" {
		verCheck.Status, verCheck.Error = sdk.StatusWarn, w
		verCheck.Hint = fmt.Sprintf("install the plugin of the version in the cluster, or upgrade the extension with `mesh %s install | kubectl apply -f -`", ce.Name)
	}
	cat.Checks = append(cat.Checks, verCheck)
	if !p.Info.Has(client.Checks) {
		return []sdk.CheckCategory{cat}
	}
	cats, err := p.Check(ctx, kube)
	if err != nil {
		cat.Checks = append(cat.Checks, sdk.CheckResult{Description: fmt.Sprintf("%s extension checks run", ce.Name), Status: sdk.StatusFail,
			Error: err.Error(), Hint: fmt.Sprintf("run `mesh %s check` for details, or check the plugin's log with %s=debug", ce.Name, "MESH_LOG_LEVEL")})
		return []sdk.CheckCategory{cat}
	}
	return append([]sdk.CheckCategory{cat}, cats...)
}

// ExtensionChecks is Host.ExtensionChecks with the default search path and
// no logging.
func ExtensionChecks(ctx context.Context, cs kubernetes.Interface, kube sdk.KubeFlags) ([]sdk.CheckCategory, error) {
	return NewHost(nil, "").ExtensionChecks(ctx, cs, kube)
}
