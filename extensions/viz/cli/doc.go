// Package cli is the viz extension's command tree (`mesh viz stat|routes|
// edges|top|tap|dashboard`), its output formats, and its install, uninstall
// and check logic. cmd/mesh-viz serves it through the plugin SDK.
package cli
