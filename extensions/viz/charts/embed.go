// Package charts embeds the viz extension's Helm chart (charts/viz) so that
// the mesh-viz plugin renders it in-process, with no file on disk.
package charts

import (
	"embed"
	"io/fs"
)

//go:embed all:viz
var files embed.FS

// Viz returns the viz chart's files, rooted at the chart directory.
func Viz() fs.FS {
	sub, err := fs.Sub(files, "viz")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
