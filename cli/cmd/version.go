package cmd

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/conduit-mesh/conduit/pkg/version"
	"github.com/spf13/cobra"
)

// proxyVersions counts the meshed pods per proxy version.
type proxyVersions map[string]int

func newVersionCmd(o *Options) *cobra.Command {
	var client, short, proxy bool
	var output string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the client's and the control plane's versions",
		Long: `version prints the CLI's version and the control plane's (read from its
Deployments). With --proxy it also counts the meshed pods per proxy version
(label conduit.dev/proxy-version), in -n's namespace or all namespaces.`,
		Example: `  mesh version --client
  mesh version --short
  mesh version --proxy
  mesh version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" && output != "" {
				return fmt.Errorf("version: unknown output format %q (accepted: text, json)", output)
			}
			info := version.Get()
			server, proxies := "", proxyVersions(nil)
			var serverErr, proxiesErr error
			if !client {
				server, proxies, serverErr, proxiesErr = serverVersions(cmd, o, proxy)
			}
			if output == "json" {
				doc := map[string]any{"client": info}
				if !client {
					if serverErr != nil {
						doc["serverError"] = serverErr.Error()
					} else {
						doc["server"] = map[string]string{"version": server}
					}
					if proxy && proxies != nil {
						doc["proxies"] = proxies
					}
					if proxy && proxiesErr != nil {
						doc["proxiesError"] = proxiesErr.Error()
					}
				}
				enc := json.NewEncoder(o.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			if short {
				fmt.Fprintln(o.Out, info.Version)
				if !client {
					if serverErr != nil {
						fmt.Fprintln(o.Out, "unavailable")
					} else {
						fmt.Fprintln(o.Out, server)
					}
				}
			} else {
				fmt.Fprintf(o.Out, "Client version: %s\nCommit: %s\nBuilt: %s\nGo: %s %s\n", info.Version, info.Commit, info.Date, info.GoVersion, info.Platform)
				if !client {
					if serverErr != nil {
						fmt.Fprintf(o.Out, "Server version: unavailable (%v)\n", serverErr)
					} else {
						fmt.Fprintf(o.Out, "Server version: %s\n", server)
					}
				}
			}
			if proxy && !client && proxiesErr != nil && !short {
				fmt.Fprintf(o.Out, "Proxy versions: unavailable (%v)\n", proxiesErr)
			}
			if proxy && !client && proxies != nil {
				printProxyVersions(o, proxies)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&client, "client", false, "print the client version only")
	c.Flags().BoolVar(&short, "short", false, "print the version numbers only (client, then server)")
	c.Flags().BoolVar(&proxy, "proxy", false, "also print the versions of the meshed pods' proxies")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

// serverVersions returns the control plane's version and, with proxy, the
// proxies' versions; serverErr says why there is no server version,
// proxiesErr why there are no proxy versions (the server's version is still
// known then: listing pods everywhere may be forbidden where reading the
// control plane is not).
func serverVersions(cmd *cobra.Command, o *Options, proxy bool) (server string, proxies proxyVersions, serverErr, proxiesErr error) {
	k, err := o.Kube()
	if err != nil {
		return "", nil, err, nil
	}
	ctx := cmd.Context()
	ns := o.controlPlaneNS()
	server, err = serverVersion(ctx, k, ns)
	if err != nil {
		return "", nil, err, nil
	}
	if !proxy {
		return server, nil, nil, nil
	}
	ch := &checker{o: o, kube: k, ns: ns}
	pods, err := ch.meshedPods(ctx, o.Namespace)
	if err != nil {
		return server, nil, nil, fmt.Errorf("list meshed pods: %w", err)
	}
	pv := proxyVersions{}
	for _, p := range pods {
		v := p.Labels[proxyVersionLabel]
		if v == "" {
			v = "unknown"
		}
		pv[v]++
	}
	return server, pv, nil, nil
}

func printProxyVersions(o *Options, pv proxyVersions) {
	if len(pv) == 0 {
		fmt.Fprintln(o.Out, "Proxy versions: no meshed pods")
		return
	}
	keys := make([]string, 0, len(pv))
	for k := range pv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s (%d pods)", k, pv[k]))
	}
	fmt.Fprintf(o.Out, "Proxy versions: %s\n", strings.Join(parts, ", "))
}
