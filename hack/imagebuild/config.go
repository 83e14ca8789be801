package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// DefaultUser is the uid (and gid) an image runs as unless its entry says otherwise.
const DefaultUser = 65532

// Extras are named bundles of host files an entry can add to its image.
var knownExtras = map[string]bool{"iptables": true}

// Config is the parsed image list (images.yaml).
type Config struct {
	Images []Entry `json:"images"`
}

// Entry describes one image.
type Entry struct {
	// Name of the image: its reference is <registry>/<name>:<tag>.
	Name string `json:"name"`
	// Package is the Go main package to build, relative to Dir.
	Package string `json:"package,omitempty"`
	// Dir is the Go module directory to build in, relative to the repository root ("." if empty).
	Dir string `json:"dir,omitempty"`
	// Binary is an already built static executable to ship instead of a package ($VARS expanded).
	Binary string `json:"binary,omitempty"`
	// User is "uid" or "uid:gid" (numeric); empty means 65532.
	User string `json:"user,omitempty"`
	// Extras adds bundles of host files, e.g. "iptables".
	Extras []string `json:"extras,omitempty"`
	// Args is the image's default command line (after the entrypoint).
	Args []string `json:"args,omitempty"`
	// Tag, when set, is used instead of the build's tag (images pinned to a version).
	Tag string `json:"tag,omitempty"`
	// Local images are only for the local cluster and are never pushed.
	Local bool `json:"local,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)

// ParseConfig reads and validates an image list. $VAR and ${VAR} in binary paths are expanded
// with expand.
func ParseConfig(data []byte, expand func(string) string) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("imagebuild: parsing image list: %w", err)
	}
	seen := map[string]bool{}
	for i := range c.Images {
		e := &c.Images[i]
		where := fmt.Sprintf("imagebuild: image list entry %d (%q)", i+1, e.Name)
		switch {
		case !nameRE.MatchString(e.Name):
			return nil, fmt.Errorf("%s: name must be lowercase letters, digits and . _ - separators", where)
		case seen[e.Name]:
			return nil, fmt.Errorf("%s: duplicate name", where)
		case (e.Package == "") == (e.Binary == ""):
			return nil, fmt.Errorf("%s: exactly one of package or binary is required", where)
		case e.Package != "" && !strings.HasPrefix(e.Package, "./"):
			return nil, fmt.Errorf("%s: package %q must be a relative path starting with ./", where, e.Package)
		case e.Tag != "" && !regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`).MatchString(e.Tag):
			return nil, fmt.Errorf("%s: tag %q is not a valid image tag", where, e.Tag)
		}
		seen[e.Name] = true
		if _, _, err := e.IDs(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		for _, x := range e.Extras {
			if !knownExtras[x] {
				return nil, fmt.Errorf("%s: unknown extra %q (known: iptables)", where, x)
			}
		}
		if e.Dir == "" {
			e.Dir = "."
		}
		if e.Binary != "" && expand != nil {
			e.Binary = os.Expand(e.Binary, expand)
		}
	}
	return &c, nil
}

// IDs returns the numeric uid and gid the image runs as.
func (e Entry) IDs() (uid, gid int, err error) {
	if e.User == "" {
		return DefaultUser, DefaultUser, nil
	}
	u, g, hasGroup := strings.Cut(e.User, ":")
	uid, err = strconv.Atoi(u)
	if err != nil || uid < 0 {
		return 0, 0, fmt.Errorf("user %q: want a numeric uid or uid:gid", e.User)
	}
	gid = uid
	if hasGroup {
		gid, err = strconv.Atoi(g)
		if err != nil || gid < 0 {
			return 0, 0, fmt.Errorf("user %q: want a numeric uid or uid:gid", e.User)
		}
	}
	return uid, gid, nil
}

// BinaryName is the file name of the image's executable (/usr/local/bin/<name>).
func (e Entry) BinaryName() string {
	if e.Binary != "" {
		return filepath.Base(e.Binary)
	}
	return filepath.Base(e.Package)
}

// Ref is the image reference for a registry and a default tag.
func (e Entry) Ref(registry, tag string) string {
	if e.Tag != "" {
		tag = e.Tag
	}
	return strings.TrimSuffix(registry, "/") + "/" + e.Name + ":" + tag
}

// SourceMissing reports why the entry cannot be built yet (its Go package does not exist), or "".
func (e Entry) SourceMissing(root string) string {
	if e.Binary != "" {
		if _, err := os.Stat(e.Binary); err != nil {
			return fmt.Sprintf("binary %s does not exist", e.Binary)
		}
		return ""
	}
	dir := filepath.Join(root, e.Dir, e.Package)
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			return ""
		}
	}
	return fmt.Sprintf("package %s has no Go files (yet) in %s", e.Package, dir)
}
