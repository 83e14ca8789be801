package pluginhost

import (
	"errors"
	"os"
	"path/filepath"
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
