package pluginhost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
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

// ErrUnsafe is wrapped by Find's error when the plugin binary could have
// been replaced by any user of the machine: it is world-writable, or in a
// world-writable directory without the sticky bit.
var ErrUnsafe = errors.New("plugin binary refused")

var nameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$`)

// ValidName tells whether name can be an extension name (a DNS label).
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Finder searches plugin binaries in Dirs, in order (first wins).
type Finder struct {
	Dirs []string
}

// DefaultFinder searches $MESH_PLUGINS_DIR, ~/.conduit/plugins and $PATH.
// The relative entries of $PATH ("." or "bin") are skipped, as os/exec
// does: they would run a mesh-<name> of whatever directory mesh is run in
// (a downloaded repository). $MESH_PLUGINS_DIR is the user's explicit
// choice and is kept as given.
func DefaultFinder() Finder {
	var dirs []string
	dirs = append(dirs, filepath.SplitList(os.Getenv(EnvPluginsDir))...)
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".conduit", "plugins"))
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if filepath.IsAbs(d) {
			dirs = append(dirs, d)
		}
	}
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
			if err := replaceable(p); err != nil {
				return "", err
			}
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
	// Err, wrapping ErrUnsafe, says why the binary must not be run.
	Err error
}

// All returns every plugin binary in the directories, one per name (the
// first found), sorted by name.
func (f Finder) All() []Found {
	byName := map[string]Found{}
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
				byName[name] = Found{Name: name, Path: p, Err: replaceable(p)}
			}
		}
	}
	out := make([]Found, 0, len(byName))
	for _, f := range byName {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// replaceable tells why another user of the machine could have replaced the
// binary at p (nil if none could): it is writable by every user, or its
// directory is (without the sticky bit, which keeps others from replacing
// a file they do not own). Windows has no such permission bits.
func replaceable(p string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("pluginhost: %s: %w", p, err)
	}
	if st.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("pluginhost: %s is writable by every user, so it may be anybody's code: %w (run chmod o-w %s if you trust it)", p, ErrUnsafe, p)
	}
	dir := filepath.Dir(p)
	dst, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pluginhost: %s: %w", dir, err)
	}
	if dst.Mode().Perm()&0o002 != 0 && dst.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("pluginhost: %s is in a directory writable by every user (%s), so it may be anybody's code: %w (move it to ~/.conduit/plugins)", p, dir, ErrUnsafe)
	}
	return nil
}
