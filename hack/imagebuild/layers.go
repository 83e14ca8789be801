package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// epoch is the modification time of every file in every layer, so that the same inputs always
// give the same layer digest.
var epoch = time.Unix(0, 0).UTC()

// node is one file system entry of a layer.
type node struct {
	mode     int64 // permission bits
	typ      byte  // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	data     []byte
	target   string // symlink target
	uid, gid int
}

// tree is the content of one layer, keyed by absolute path.
type tree map[string]*node

func (t tree) dir(p string, mode int64) {
	p = path.Clean(p)
	if p == "/" {
		return
	}
	t.dir(path.Dir(p), 0o755)
	if n, ok := t[p]; ok && n.typ == tar.TypeDir {
		if mode != 0o755 {
			n.mode = mode
		}
		return
	}
	t[p] = &node{typ: tar.TypeDir, mode: mode}
}

func (t tree) file(p string, mode int64, data []byte) {
	p = path.Clean(p)
	t.dir(path.Dir(p), 0o755)
	t[p] = &node{typ: tar.TypeReg, mode: mode, data: data}
}

func (t tree) symlink(p, target string) {
	p = path.Clean(p)
	t.dir(path.Dir(p), 0o755)
	t[p] = &node{typ: tar.TypeSymlink, mode: 0o777, target: target}
}

// tar serialises the tree: sorted paths, numeric owners, fixed times.
func (t tree) tar() ([]byte, error) {
	paths := make([]string, 0, len(t))
	for p := range t {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		n := t[p]
		h := &tar.Header{
			Name: strings.TrimPrefix(p, "/"), Typeflag: n.typ, Mode: n.mode,
			Uid: n.uid, Gid: n.gid, ModTime: epoch, Format: tar.FormatPAX,
		}
		switch n.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(n.data))
		case tar.TypeSymlink:
			h.Linkname = n.target
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("imagebuild: tar %s: %w", p, err)
		}
		if n.typ == tar.TypeReg {
			if _, err := tw.Write(n.data); err != nil {
				return nil, fmt.Errorf("imagebuild: tar %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("imagebuild: tar: %w", err)
	}
	return buf.Bytes(), nil
}

// addHost copies the host path p into the tree. Symbolic links along the way (such as Debian's
// /lib -> usr/lib) are reproduced as links, and their targets are copied too.
func (t tree) addHost(p string) error {
	return t.addHostDepth(p, 0)
}

func (t tree) addHostDepth(p string, depth int) error {
	if depth > 32 {
		return fmt.Errorf("imagebuild: too many symbolic links resolving %s", p)
	}
	dir, err := t.addHostDir(filepath.Dir(p), depth)
	if err != nil {
		return err
	}
	p = filepath.Join(dir, filepath.Base(p))
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("imagebuild: host file: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("imagebuild: host file: %w", err)
		}
		t.symlink(p, target)
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		return t.addHostDepth(target, depth+1)
	case fi.IsDir():
		entries, err := os.ReadDir(p)
		if err != nil {
			return fmt.Errorf("imagebuild: host dir: %w", err)
		}
		t.dir(p, int64(fi.Mode().Perm()))
		for _, e := range entries {
			if err := t.addHostDepth(filepath.Join(p, e.Name()), depth); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode().IsRegular():
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("imagebuild: host file: %w", err)
		}
		t.file(p, int64(fi.Mode().Perm()), data)
		return nil
	default:
		return fmt.Errorf("imagebuild: host file %s: unsupported file type %s", p, fi.Mode().Type())
	}
}

// addHostDir makes sure directory d exists in the tree the way it exists on the host and
// returns its symlink-free path.
func (t tree) addHostDir(d string, depth int) (string, error) {
	if d == "/" || d == "." {
		return "/", nil
	}
	parent, err := t.addHostDir(filepath.Dir(d), depth)
	if err != nil {
		return "", err
	}
	d = filepath.Join(parent, filepath.Base(d))
	fi, err := os.Lstat(d)
	if err != nil {
		return "", fmt.Errorf("imagebuild: host dir: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		t.dir(d, int64(fi.Mode().Perm()))
		return d, nil
	}
	if depth > 32 {
		return "", fmt.Errorf("imagebuild: too many symbolic links resolving %s", d)
	}
	target, err := os.Readlink(d)
	if err != nil {
		return "", fmt.Errorf("imagebuild: host dir: %w", err)
	}
	t.symlink(d, target)
	if !filepath.IsAbs(target) {
		target = filepath.Join(parent, target)
	}
	return t.addHostDir(filepath.Clean(target), depth+1)
}

// user is one /etc/passwd line.
type user struct {
	name     string
	uid, gid int
	home     string
}

// baseTree is the layer every image starts from: users and groups, CA certificates, name
// service configuration and a world-writable /tmp. users must include root.
func baseTree(users []user, caBundle []byte) tree {
	t := tree{}
	var passwd, group strings.Builder
	for _, u := range users {
		shell := "/sbin/nologin"
		fmt.Fprintf(&passwd, "%s:x:%d:%d:%s:%s:%s\n", u.name, u.uid, u.gid, u.name, u.home, shell)
		fmt.Fprintf(&group, "%s:x:%d:\n", u.name, u.gid)
	}
	t.file("/etc/passwd", 0o644, []byte(passwd.String()))
	t.file("/etc/group", 0o644, []byte(group.String()))
	t.file("/etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n"))
	t.file("/etc/ssl/certs/ca-certificates.crt", 0o644, caBundle)
	t.dir("/tmp", 0o1777)
	t.dir("/usr/local/bin", 0o755)
	for _, u := range users {
		if u.home != "/" && u.home != "/root" {
			t.dir(u.home, 0o700)
			t[u.home].uid, t[u.home].gid = u.uid, u.gid
		}
	}
	t.dir("/root", 0o700)
	return t
}

// usersFor returns the passwd entries of a set of uid:gid pairs: root, nonroot (65532) and one
// "conduit<uid>" user per other id. The list is sorted by uid so that the base layer is the
// same for every image of one build.
func usersFor(ids map[[2]int]bool) []user {
	users := []user{{name: "root", uid: 0, gid: 0, home: "/root"}, {name: "nonroot", uid: DefaultUser, gid: DefaultUser, home: "/home/nonroot"}}
	var extra [][2]int
	for id := range ids {
		if id[0] != 0 && id[0] != DefaultUser {
			extra = append(extra, id)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i][0] < extra[j][0] })
	seen := map[int]bool{0: true, DefaultUser: true}
	for _, id := range extra {
		if seen[id[0]] {
			continue
		}
		seen[id[0]] = true
		users = append(users, user{name: fmt.Sprintf("conduit%d", id[0]), uid: id[0], gid: id[1], home: "/"})
	}
	sort.Slice(users, func(i, j int) bool { return users[i].uid < users[j].uid })
	return users
}

// iptablesTree holds Debian's iptables (nft and legacy back ends), their shared libraries,
// their extension modules and the usual command names as links.
func iptablesTree() (tree, error) {
	t := tree{}
	bins := []string{"/usr/sbin/xtables-nft-multi", "/usr/sbin/xtables-legacy-multi"}
	mods, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/xtables/*.so")
	if len(mods) == 0 {
		return nil, fmt.Errorf("imagebuild: iptables extra: no extension modules in /usr/lib/x86_64-linux-gnu/xtables (apt-get install iptables)")
	}
	libs := map[string]bool{}
	for _, f := range append(append([]string{}, bins...), mods...) {
		if err := t.addHost(f); err != nil {
			return nil, fmt.Errorf("imagebuild: iptables extra (apt-get install iptables): %w", err)
		}
		deps, err := sharedLibs(f)
		if err != nil {
			return nil, err
		}
		for _, d := range deps {
			libs[d] = true
		}
	}
	for l := range libs {
		if err := t.addHost(l); err != nil {
			return nil, err
		}
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			t.symlink("/usr/sbin/"+fam+suffix, "xtables-nft-multi")
			t.symlink("/usr/sbin/"+fam+"-nft"+suffix, "xtables-nft-multi")
			t.symlink("/usr/sbin/"+fam+"-legacy"+suffix, "xtables-legacy-multi")
		}
	}
	for _, f := range []string{"/etc/protocols", "/etc/services"} {
		if _, err := os.Stat(f); err == nil {
			if err := t.addHost(f); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

var lddPath = regexp.MustCompile(`(?m)(?:=>\s*|^\s*)(/\S+)`)

// sharedLibs lists the absolute paths of the shared libraries (and loader) a binary needs.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil, nil
		}
		return nil, fmt.Errorf("imagebuild: ldd %s: %w: %s", bin, err, out)
	}
	var libs []string
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	return libs, nil
}
