// Command mesh-viz is the viz extension's plugin: the mesh CLI runs it as
// `mesh viz ...` through the plugin SDK (install, uninstall, check, stat,
// routes, edges, dashboard).
package main

import (
	"github.com/conduit-mesh/conduit/extensions/viz/plugin"
	"github.com/conduit-mesh/conduit/pkg/clikit"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
)

func main() {
	clikit.QuietConnectionEnds() // its dashboard and tap port-forward
	sdk.Serve(plugin.Viz{})
}
