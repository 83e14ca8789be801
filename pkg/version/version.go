// Package version holds the build identity of every Conduit binary,
// stamped at link time by `make build` (-ldflags -X).
package version

import (
	"fmt"
	"runtime"
)

// Set by the linker.
var (
	Version = "dev"
	Commit  = "none"
	Date    = "unknown"
)

// Info is the build identity, as printed by `mesh version` and served by every component.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the build identity of the running binary.
func Get() Info {
	return Info{Version: Version, Commit: Commit, Date: Date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
}

func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s, %s)", i.Version, i.Commit, i.Date, i.GoVersion, i.Platform)
}
