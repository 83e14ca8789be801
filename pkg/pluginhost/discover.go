package pluginhost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

const (
	// BinaryPrefix prefixes every plugin binary: mesh-<name>.
	BinaryPrefix = "mesh-"
	// EnvPluginsDir names the first directory (or list of directories,
	// separated like $PATH) searched for plugins.
	EnvPluginsDir = "MESH_PLUGINS_DIR"
)

// ErrNotFound is wrapped by Find's error when no plugin binary exists.
var ErrNotFound = errors.New("plugin not found")

var nameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$`)

// ValidName tells whether name can be an extension name (a DNS label).
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Finder searches plugin binaries in Dirs, in order (first wins).
type Finder struct {
	Dirs []string
}

// DefaultFinder searches $MESH_PLUGINS_DIR, ~/.conduit/plugins and $PATH.
func DefaultFinder() Finder {
	var dirs []string
	dirs = append(dirs, filepath.SplitList(os.Getenv(EnvPluginsDir))...)
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".conduit", "plugins"))
	}
	dirs = append(dirs, filepath.SplitList(os.Getenv("PATH"))...)
	return Finder{Dirs: dirs}
}

func (f Finder) dirs() []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range f.Dirs {
		if d == "" || seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, d)
	}
	return out
}

// Find returns the path of mesh-<name>.
func (f Finder) Find(name string) (string, error) {
	if !ValidName(name) {
		return "", fmt.Errorf("pluginhost: %q is not a valid extension name (a lowercase DNS label)", name)
	}
	for _, d := range f.dirs() {
		p := filepath.Join(d, BinaryPrefix+name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("pluginhost: no %s%s in %s: %w", BinaryPrefix, name, f.describe(), ErrNotFound)
}

func (f Finder) describe() string {
	if len(f.Dirs) == 0 {
		return "(no directory)"
	}
	return "$" + EnvPluginsDir + ", ~/.conduit/plugins or $PATH"
}

// Found is a plugin binary on disk.
type Found struct {
	Name string
	Path string
}

// All returns every plugin binary in the directories, one per name (the
// first found), sorted by name.
func (f Finder) All() []Found {
	byName := map[string]string{}
	for _, d := range f.dirs() {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name, ok := strings.CutPrefix(e.Name(), BinaryPrefix)
			if !ok || !ValidName(name) {
				continue
			}
			if _, dup := byName[name]; dup {
				continue
			}
			p := filepath.Join(d, e.Name())
			if isExecutable(p) {
				byName[name] = p
			}
		}
	}
	out := make([]Found, 0, len(byName))
	for n, p := range byName {
		out = append(out, Found{Name: n, Path: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}
