// Package render renders Conduit's embedded Helm charts (package charts)
// in-process, as `mesh install`, `mesh upgrade` and `mesh uninstall` print
// them, with the plugin SDK's chart package (plugin-sdk/chart), which every
// extension renders its own chart with: values are merged like helm does
// (chart defaults, values files, then --set and --set-string), checked
// against the chart's values.schema.json, and the objects come out in a
// deterministic install order.
package render
