// Package charts embeds Conduit's Helm charts, conduit-crds and
// conduit-control-plane, so that the mesh CLI renders them in-process with
// no file on disk. The same directories install with plain `helm install`.
package charts

import (
	"embed"
	"io/fs"
)

//go:embed all:conduit-crds all:conduit-control-plane
var files embed.FS

// Names of the embedded charts.
const (
	CRDs         = "conduit-crds"
	ControlPlane = "conduit-control-plane"
)

// FS returns the files of the chart name (CRDs or ControlPlane), rooted at the
// chart directory.
func FS(name string) (fs.FS, error) {
	if name != CRDs && name != ControlPlane {
		return nil, fs.ErrNotExist
	}
	return fs.Sub(files, name)
}
