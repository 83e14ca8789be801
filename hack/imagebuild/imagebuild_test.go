package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(t *testing.T, c *Config)
	}{
		{
			name: "defaults and overrides",
			yaml: `images:
- {name: controller, package: ./core/cmd/controller}
- {name: proxy, package: ./proxy/cmd/proxy, user: "2102"}
- {name: proxy-init, package: ./proxy/cmd/proxy-init, user: "0", extras: [iptables]}
- {name: pause, binary: "${K8S_CACHE}/bin/pause", tag: "3.10", local: true}
- {name: viz, package: ./cmd/viz, dir: extensions/viz, user: "1000:2000"}`,
			check: func(t *testing.T, c *Config) {
				if len(c.Images) != 5 {
					t.Fatalf("%d images", len(c.Images))
				}
				want := []struct {
					ref, bin string
					uid, gid int
				}{
					{"r/controller:t", "controller", 65532, 65532},
					{"r/proxy:t", "proxy", 2102, 2102},
					{"r/proxy-init:t", "proxy-init", 0, 0},
					{"r/pause:3.10", "pause", 65532, 65532},
					{"r/viz:t", "viz", 1000, 2000},
				}
				for i, w := range want {
					e := c.Images[i]
					uid, gid, _ := e.IDs()
					if e.Ref("r/", "t") != w.ref || e.BinaryName() != w.bin || uid != w.uid || gid != w.gid {
						t.Errorf("entry %d: ref %s bin %s ids %d:%d, want %+v", i, e.Ref("r/", "t"), e.BinaryName(), uid, gid, w)
					}
				}
				if c.Images[3].Binary != "/cache/k8s/bin/pause" {
					t.Errorf("binary not expanded: %s", c.Images[3].Binary)
				}
				if c.Images[0].Dir != "." || c.Images[4].Dir != "extensions/viz" {
					t.Errorf("dirs %q %q", c.Images[0].Dir, c.Images[4].Dir)
				}
			},
		},
		{name: "unknown field", yaml: "images:\n- {name: a, package: ./a, usr: 1}", wantErr: "unknown field"},
		{name: "bad name", yaml: "images:\n- {name: A_b, package: ./a}", wantErr: "name must be"},
		{name: "duplicate", yaml: "images:\n- {name: a, package: ./a}\n- {name: a, package: ./b}", wantErr: "duplicate"},
		{name: "package and binary", yaml: "images:\n- {name: a, package: ./a, binary: /x}", wantErr: "exactly one of"},
		{name: "neither", yaml: "images:\n- {name: a}", wantErr: "exactly one of"},
		{name: "absolute package", yaml: "images:\n- {name: a, package: github.com/x/a}", wantErr: "relative path"},
		{name: "bad user", yaml: "images:\n- {name: a, package: ./a, user: nobody}", wantErr: "numeric uid"},
		{name: "bad gid", yaml: "images:\n- {name: a, package: ./a, user: '1:x'}", wantErr: "numeric uid"},
		{name: "unknown extra", yaml: "images:\n- {name: a, package: ./a, extras: [bash]}", wantErr: "unknown extra"},
		{name: "bad tag", yaml: "images:\n- {name: a, package: ./a, tag: 'a:b'}", wantErr: "not a valid image tag"},
	}
	expand := func(k string) string { return map[string]string{"K8S_CACHE": "/cache/k8s"}[k] }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.yaml), expand)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestRepositoryImageList(t *testing.T) {
	data, err := os.ReadFile("../../images.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data, os.Getenv)
	if err != nil {
		t.Fatalf("images.yaml: %v", err)
	}
	for _, n := range []string{"controller", "proxy", "proxy-init", "pause", "coredns", "testapp"} {
		if !c.has(n) {
			t.Errorf("images.yaml has no %s image", n)
		}
	}
}

func TestSourceMissing(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "cmd/a"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "cmd/onlytests"), 0o755))
	must(os.WriteFile(filepath.Join(root, "cmd/a/main.go"), []byte("package main"), 0o644))
	must(os.WriteFile(filepath.Join(root, "cmd/onlytests/x_test.go"), []byte("package main"), 0o644))
	tests := []struct {
		e       Entry
		missing bool
	}{
		{Entry{Package: "./cmd/a", Dir: "."}, false},
		{Entry{Package: "./cmd/onlytests", Dir: "."}, true},
		{Entry{Package: "./cmd/b", Dir: "."}, true},
		{Entry{Binary: filepath.Join(root, "cmd/a/main.go")}, false},
		{Entry{Binary: filepath.Join(root, "nope")}, true},
	}
	for _, tt := range tests {
		if got := tt.e.SourceMissing(root) != ""; got != tt.missing {
			t.Errorf("%+v: missing = %v, want %v", tt.e, got, tt.missing)
		}
	}
}

// files lists a tar's entries as "name mode uid:gid type[->link]".
func files(t *testing.T, raw []byte) map[string]*tar.Header {
	t.Helper()
	m := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m
		}
		if err != nil {
			t.Fatal(err)
		}
		m[h.Name] = h
	}
}

func TestBaseTree(t *testing.T) {
	users := usersFor(map[[2]int]bool{{65532, 65532}: true, {2102, 2102}: true, {0, 0}: true})
	raw, err := baseTree(users, []byte("CA")).tar()
	if err != nil {
		t.Fatal(err)
	}
	fs := files(t, raw)
	for _, p := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "tmp/", "home/nonroot/", "usr/local/bin/"} {
		if fs[p] == nil {
			t.Errorf("base layer lacks %s", p)
		}
	}
	if h := fs["tmp/"]; h != nil && h.Mode != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", h.Mode)
	}
	if h := fs["home/nonroot/"]; h != nil && (h.Uid != 65532 || h.Mode != 0o700) {
		t.Errorf("/home/nonroot uid %d mode %o", h.Uid, h.Mode)
	}
	for _, h := range fs {
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s has time %v, want the epoch", h.Name, h.ModTime)
		}
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var passwd string
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		if h.Name == "etc/passwd" {
			b, _ := io.ReadAll(tr)
			passwd = string(b)
		}
	}
	want := "root:x:0:0:root:/root:/sbin/nologin\nconduit2102:x:2102:2102:conduit2102:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	if passwd != want {
		t.Errorf("passwd =\n%s\nwant\n%s", passwd, want)
	}
}

func TestAddHostFollowsSymlinks(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755))
	must(os.WriteFile(filepath.Join(root, "usr/lib/libx.so.1.2"), []byte("ELF"), 0o644))
	must(os.Symlink("libx.so.1.2", filepath.Join(root, "usr/lib/libx.so.1")))
	must(os.Symlink("usr/lib", filepath.Join(root, "lib")))
	tr := tree{}
	must(tr.addHost(filepath.Join(root, "lib/libx.so.1")))
	lib := filepath.Join(root, "lib")
	if n := tr[lib]; n == nil || n.target != "usr/lib" {
		t.Errorf("%s not kept as a link to usr/lib: %+v", lib, n)
	}
	if n := tr[filepath.Join(root, "usr/lib/libx.so.1")]; n == nil || n.target != "libx.so.1.2" {
		t.Errorf("libx.so.1 not a link: %+v", n)
	}
	if n := tr[filepath.Join(root, "usr/lib/libx.so.1.2")]; n == nil || string(n.data) != "ELF" {
		t.Errorf("libx.so.1.2 not copied: %+v", n)
	}
}

func TestImageArchive(t *testing.T) {
	base, err := layer(baseTree(usersFor(nil), []byte("CA")))
	if err != nil {
		t.Fatal(err)
	}
	build := func(bin string) []byte {
		img, err := assemble(ImageSpec{BinaryName: "app", Binary: []byte(bin), UID: 2102, GID: 2102, Args: []string{"serve"}, Base: base})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := writeOCIArchive(&buf, img, "localhost/conduit/app:dev", "dev"); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b, c := build("v1"), build("v1"), build("v2")
	if !bytes.Equal(a, b) {
		t.Error("the same inputs gave different archives")
	}
	if bytes.Equal(a, c) {
		t.Error("different binaries gave the same archive")
	}

	// Unpack the archive and read it back as an OCI layout.
	dir := t.TempDir()
	tr := tar.NewReader(bytes.NewReader(a))
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		p := filepath.Join(dir, h.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["io.containerd.image.name"] != "localhost/conduit/app:dev" {
		t.Fatalf("index manifests = %+v", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "2102:2102" || cf.Config.Entrypoint[0] != "/usr/local/bin/app" || cf.Config.Cmd[0] != "serve" || cf.OS != "linux" {
		t.Errorf("config = %+v", cf.Config)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers = %d, %v", len(layers), err)
	}
	rc, err := layers[1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(rc)
	if h := files(t, raw)["usr/local/bin/app"]; h == nil || h.Mode != 0o755 {
		t.Errorf("app layer: %+v", h)
	}
}

func TestIptablesTree(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/xtables-nft-multi"); err != nil {
		t.Skip("iptables is not installed on this host")
	}
	tr, err := iptablesTree()
	if err != nil {
		t.Fatal(err)
	}
	for p, target := range map[string]string{
		"/usr/sbin/iptables": "xtables-nft-multi", "/usr/sbin/iptables-save": "xtables-nft-multi",
		"/usr/sbin/iptables-restore": "xtables-nft-multi", "/usr/sbin/iptables-legacy": "xtables-legacy-multi",
		"/usr/sbin/iptables-nft": "xtables-nft-multi", "/usr/sbin/ip6tables-legacy-restore": "xtables-legacy-multi",
	} {
		if n := tr[p]; n == nil || n.target != target {
			t.Errorf("%s: %+v, want a link to %s", p, n, target)
		}
	}
	for _, p := range []string{"/usr/sbin/xtables-nft-multi", "/usr/sbin/xtables-legacy-multi", "/usr/lib/x86_64-linux-gnu/xtables/libxt_REDIRECT.so"} {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			t.Fatal(err)
		}
		if n := tr[p]; n == nil || (n.typ == tar.TypeReg && len(n.data) == 0) {
			t.Errorf("%s missing", p)
		}
		if n := tr[real]; n == nil || len(n.data) == 0 {
			t.Errorf("%s missing", p)
		}
	}
	libs, err := sharedLibs("/usr/sbin/xtables-nft-multi")
	if err != nil || len(libs) == 0 {
		t.Fatalf("ldd: %v %v", libs, err)
	}
	for _, l := range libs {
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			t.Fatal(err)
		}
		if tr[real] == nil || tr[real].typ != tar.TypeReg {
			t.Errorf("shared library %s missing", l)
		}
	}
}
