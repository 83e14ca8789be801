// Package charts embeds the viz extension's Helm chart (charts/viz) so that
// the mesh-viz plugin renders it in-process, with no file on disk.
package charts

import (
	"embed"
	"io/fs"
	"regexp"

	"github.com/conduit-mesh/conduit/pkg/version"
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

var semver = regexp.MustCompile(`^v?\d+\.\d+\.\d+`)

// Version is viz's version: the build's when that is a semantic version,
// else 0.1.0-dev. The plugin reports it (sdk.Info) and the chart labels
// viz's namespace with it (conduit.dev/extension-version), so that
// `mesh extensions list` shows what the cluster runs and `mesh check`
// warns when the plugin on this machine is another version.
func Version() string {
	if v := version.Version; semver.MatchString(v) {
		return v
	}
	return "0.1.0-dev"
}
