// Package pluginhost finds, launches and calls Conduit extensions for the
// mesh CLI and the control plane.
//
//   - Discovery (discover.go): `mesh <name>` runs the binary mesh-<name>,
//     first found in $MESH_PLUGINS_DIR, ~/.conduit/plugins, then $PATH.
//   - Launch (launch.go): a plugin binary runs as a hashicorp/go-plugin gRPC
//     subprocess speaking conduit.plugin.v1 (go-plugin protocol version 1),
//     with AutoMTLS; its logs reach the host's slog logger under its name.
//   - Cluster (cluster.go, extensions.go, checks.go): the extensions
//     installed in the cluster are the namespaces labelled
//     conduit.dev/extension=<name>; `mesh extensions list` and `mesh check`
//     join them with the plugins on disk.
//   - Hooks (hooks.go, adapters.go, allowlist.go): in the cluster an
//     extension's controller hands out its hook binary (sdk.ServeHooks) at
//     the address its namespace advertises in the conduit.dev/injector-hook
//     and conduit.dev/destination-hook annotations; the injector and
//     destination fetch it, check its SHA-256 against the allow-list
//     (ConfigMap conduit-extension-allowlist), run it as a go-plugin
//     subprocess and call its hooks with a short deadline; a failure never
//     fails admission or discovery (it is logged, recorded as an Event and
//     counted).
//
// See docs/extensions.md for the design.
package pluginhost
