package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	"github.com/spf13/cobra"
)

func newExtensionsCmd(o *Options) *cobra.Command {
	c := &cobra.Command{
		Use:   "extensions",
		Short: "Manage Conduit extensions (plugins run as 'mesh <name>')",
		Long: `An extension is a plugin binary mesh-<name>, run as 'mesh <name> ...', found in
$MESH_PLUGINS_DIR, ~/.conduit/plugins, then $PATH (the first wins), plus what it
installs in the cluster (a namespace labelled conduit.dev/extension=<name>).
'mesh <name> install | kubectl apply -f -' installs one; 'mesh check' runs the
checks of every installed extension. The control plane runs an extension's hooks
only once 'mesh extensions allow <name>' has pinned its binary. See docs/extensions.md.`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(newExtensionsListCmd(o), newExtensionsAllowCmd(o), newExtensionsDisallowCmd(o))
	return c
}

func newExtensionsListCmd(o *Options) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the extensions installed in the cluster and the plugins on this machine",
		Long: `list shows every extension installed in the cluster (namespaces labelled
conduit.dev/extension=<name>, version from conduit.dev/extension-version) and every
plugin mesh-<name> on this machine, with its version and capabilities. An extension
installed without its plugin is a warning that says how to get the plugin. When the
cluster cannot be reached, only the plugins on this machine are listed.

HOOKS is, for an extension that serves control-plane hooks: "not allowed" (not in
the allow-list: 'mesh extensions allow NAME'), "allowed, running" (every ready
injector and destination pod that calls them runs the allowed binary), or "allowed,
not running" with a warning that names each pod that does not, and why.`,
		Example: `  mesh extensions list
  mesh extensions list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("extensions: unknown output format %q (accepted: table, json)", output)
			}
			h := newPluginHost(o)
			k, err := o.Kube()
			var rows []pluginhost.Extension
			if err == nil {
				if rows, err = h.List(cmd.Context(), k.Client); err == nil {
					addHookStates(cmd.Context(), o, k, rows)
				}
			}
			if err != nil {
				fmt.Fprintf(o.Err, "Warning: cannot list the extensions installed in the cluster, showing only the plugins on this machine: %v\n", err)
				if rows, err = h.List(cmd.Context(), nil); err != nil {
					return err
				}
			}
			if output == "json" {
				return writeExtensionsJSON(o.Out, rows)
			}
			writeExtensionsTable(o.Out, rows)
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return c
}

// addHookStates refines the HOOKS of each allowed extension in rows with
// what the control plane reports of them (its pods' hook gauge), and warns
// about the pods that do not run them. The installed extensions and the
// allow-list are read once, and only when some row is allowed.
func addHookStates(ctx context.Context, o *Options, k *Kube, rows []pluginhost.Extension) {
	var allowed []*pluginhost.Extension
	for i := range rows {
		if rows[i].Hooks == "allowed" {
			allowed = append(allowed, &rows[i])
		}
	}
	if len(allowed) == 0 {
		return
	}
	installed, al, inputsErr := hookInputs(ctx, o, k)
	for _, r := range allowed {
		err := inputsErr
		var states []podHookState
		if err == nil {
			states, err = readHookStates(ctx, k, o.controlPlaneNS(), r.Name, hookComponents(installed[r.Name]))
		}
		if err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("whether the control plane runs its hooks is unknown: %v", err))
			continue
		}
		var warn string
		r.Hooks, warn = hooksSummary(states, al[r.Name])
		if warn != "" {
			r.Warnings = append(r.Warnings, warn)
		}
	}
}

// hookInputs reads the installed extensions (by name, the first of each,
// as List shows it) and the hooks allow-list.
func hookInputs(ctx context.Context, o *Options, k *Kube) (map[string]pluginhost.ClusterExtension, pluginhost.AllowList, error) {
	exts, err := pluginhost.ClusterExtensions(ctx, k.Client)
	if err != nil {
		return nil, nil, err
	}
	al, _, err := pluginhost.ReadAllowList(ctx, k.Client, o.ControlPlaneNamespace)
	if err != nil {
		return nil, nil, err
	}
	installed := map[string]pluginhost.ClusterExtension{}
	for _, ce := range exts {
		if _, dup := installed[ce.Name]; !dup {
			installed[ce.Name] = ce
		}
	}
	return installed, al, nil
}

// hooksSummary is the HOOKS of an allowed extension whose allow-list entry
// is entry, from what the pods that call its hooks report, and a warning
// naming each pod that does not run them ("" when all do).
func hooksSummary(states []podHookState, entry pluginhost.AllowEntry) (hooks, warning string) {
	var off []string
	for _, s := range states {
		if !s.runs(entry) {
			off = append(off, s.describe(entry))
		}
	}
	if len(off) == 0 {
		return "allowed, running", ""
	}
	return "allowed, not running", fmt.Sprintf("its hooks are allowed (sha256:%.12s…, failure policy %s), but not every control-plane pod runs them: %s",
		entry.SHA256, entry.FailurePolicy, strings.Join(off, "; "))
}

func writeExtensionsJSON(w io.Writer, rows []pluginhost.Extension) error {
	if rows == nil {
		rows = []pluginhost.Extension{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"extensions": rows})
}

func writeExtensionsTable(w io.Writer, rows []pluginhost.Extension) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "No extension installed in the cluster, and no plugin mesh-<name> on this machine.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNAMESPACE\tCLUSTER VERSION\tPLUGIN VERSION\tCAPABILITIES\tHOOKS\tPLUGIN")
	for _, r := range rows {
		caps := make([]string, len(r.Capabilities))
		for i, c := range r.Capabilities {
			caps[i] = string(c)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, dash(r.Namespace), dash(r.ClusterVersion), dash(r.PluginVersion), dash(strings.Join(caps, ",")), dash(r.Hooks), dash(r.Plugin))
	}
	tw.Flush()
	for _, r := range rows {
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "\n‼ %s: %s", r.Name, warn)
		}
	}
	for _, r := range rows {
		if len(r.Warnings) > 0 {
			fmt.Fprintln(w)
			break
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
