// Command mesh-viz is the viz extension's plugin: the mesh CLI runs it as
// `mesh viz ...` through the plugin SDK (install, uninstall, check, stat,
// routes, edges, dashboard).
package main

import (
	"github.com/conduit-mesh/conduit/extensions/viz/plugin"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
)

func main() { sdk.Serve(plugin.Viz{}) }
