package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func touch(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultFinderPrecedence(t *testing.T) {
	root := t.TempDir()
	envDir, home, path1, path2 := filepath.Join(root, "env"), filepath.Join(root, "home"), filepath.Join(root, "p1"), filepath.Join(root, "p2")
	homeDir := filepath.Join(home, ".conduit", "plugins")
	t.Setenv(EnvPluginsDir, envDir)
	t.Setenv("HOME", home)
	t.Setenv("PATH", path1+string(os.PathListSeparator)+path2)

	touch(t, filepath.Join(path2, "mesh-a"), 0o755)
	touch(t, filepath.Join(path1, "mesh-a"), 0o755)
	touch(t, filepath.Join(homeDir, "mesh-b"), 0o755)
	touch(t, filepath.Join(path1, "mesh-b"), 0o755)
	touch(t, filepath.Join(envDir, "mesh-c"), 0o755)
	touch(t, filepath.Join(homeDir, "mesh-c"), 0o755)
	touch(t, filepath.Join(path1, "mesh-c"), 0o755)
	touch(t, filepath.Join(envDir, "mesh-d"), 0o644) // not executable: skipped
	touch(t, filepath.Join(path2, "mesh-d"), 0o755)
	touch(t, filepath.Join(path2, "mesh-Bad"), 0o755) // not a valid name
	touch(t, filepath.Join(path2, "other"), 0o755)

	f := DefaultFinder()
	for _, tc := range []struct{ name, want string }{
		{"a", filepath.Join(path1, "mesh-a")},
		{"b", filepath.Join(homeDir, "mesh-b")},
		{"c", filepath.Join(envDir, "mesh-c")},
		{"d", filepath.Join(path2, "mesh-d")},
	} {
		got, err := f.Find(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("Find(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := f.Find("zzz"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no mesh-zzz in $MESH_PLUGINS_DIR, ~/.conduit/plugins or $PATH") {
		t.Errorf("Find(zzz): %v", err)
	}
	if _, err := f.Find("../x"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Find(../x): %v", err)
	}
	var names []string
	for _, fd := range f.All() {
		names = append(names, fd.Name+"="+fd.Path)
	}
	want := []string{
		"a=" + filepath.Join(path1, "mesh-a"),
		"b=" + filepath.Join(homeDir, "mesh-b"),
		"c=" + filepath.Join(envDir, "mesh-c"),
		"d=" + filepath.Join(path2, "mesh-d"),
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("All() = %v, want %v", names, want)
	}
}

// TestDefaultFinderIgnoresRelativePath: a relative $PATH entry ("." or
// "bin") names a directory of wherever mesh runs, e.g. a cloned repository:
// a mesh-<name> there must not run (as os/exec refuses since Go 1.19).
func TestDefaultFinderIgnoresRelativePath(t *testing.T) {
	root := t.TempDir()
	abs := filepath.Join(root, "abs")
	t.Setenv(EnvPluginsDir, "")
	t.Setenv("HOME", filepath.Join(root, "home"))
	t.Setenv("PATH", strings.Join([]string{".", "bin", abs}, string(os.PathListSeparator)))
	t.Chdir(root)
	touch(t, filepath.Join(root, "mesh-dot"), 0o755)
	touch(t, filepath.Join(root, "bin", "mesh-rel"), 0o755)
	touch(t, filepath.Join(root, "bin", "mesh-both"), 0o755)
	touch(t, filepath.Join(abs, "mesh-both"), 0o755)

	f := DefaultFinder()
	for _, tc := range []struct{ name, want string }{
		{"dot", ""},
		{"rel", ""},
		{"both", filepath.Join(abs, "mesh-both")},
	} {
		got, err := f.Find(tc.name)
		if tc.want == "" {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Find(%q) = %q, %v; want not found", tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Find(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if all := f.All(); len(all) != 1 || all[0].Path != filepath.Join(abs, "mesh-both") {
		t.Errorf("All() = %+v, want only %s", all, filepath.Join(abs, "mesh-both"))
	}
}

// TestFinderRefusesReplaceableBinaries: a plugin binary that any user of the
// machine can write, or that sits in a directory any user can write (no
// sticky bit), could be anybody's code: it is refused with a clear error.
func TestFinderRefusesReplaceableBinaries(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	root := t.TempDir()
	chmod := func(p string, m os.FileMode) {
		t.Helper()
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	touch(t, filepath.Join(root, "ok", "mesh-ok"), 0o755)
	touch(t, filepath.Join(root, "ww", "mesh-ww"), 0o755)
	chmod(filepath.Join(root, "ww", "mesh-ww"), 0o757)
	touch(t, filepath.Join(root, "open", "mesh-open"), 0o755)
	chmod(filepath.Join(root, "open"), 0o777)
	touch(t, filepath.Join(root, "sticky", "mesh-sticky"), 0o755)
	chmod(filepath.Join(root, "sticky"), 0o777|os.ModeSticky)

	f := Finder{Dirs: []string{filepath.Join(root, "ok"), filepath.Join(root, "ww"), filepath.Join(root, "open"), filepath.Join(root, "sticky")}}
	for _, tc := range []struct{ name, err string }{
		{"ok", ""},
		{"sticky", ""},
		{"ww", "is writable by every user"},
		{"open", "is in a directory writable by every user"},
	} {
		got, err := f.Find(tc.name)
		if tc.err == "" {
			if err != nil {
				t.Errorf("Find(%q): %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "pluginhost: ") {
			t.Errorf("Find(%q) = %q, %v; want an error saying %q", tc.name, got, err, tc.err)
		}
	}
	var got []string
	for _, fd := range f.All() {
		got = append(got, fmt.Sprintf("%s:%v", fd.Name, fd.Err != nil))
	}
	if want := "ok:false open:true sticky:false ww:true"; strings.Join(got, " ") != want {
		t.Errorf("All() = %v, want %s", got, want)
	}
	// `mesh extensions list` names the refused binary and does not run it.
	h := &Host{Finder: Finder{Dirs: []string{filepath.Join(root, "ww")}}}
	rows, err := h.List(context.Background(), nil)
	if err != nil || len(rows) != 1 || len(rows[0].Warnings) != 1 || !strings.Contains(rows[0].Warnings[0], "is writable by every user") {
		t.Errorf("List() = %+v, %v", rows, err)
	}
}
