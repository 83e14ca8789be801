package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/procutil"
)

type options struct {
	config     string
	root       string
	out        string
	registry   string
	tag        string
	ldflags    string
	tags       string
	only       string
	containerd string
	push       bool
	insecure   bool
	print      bool
	version    string
	revision   string
}

func main() {
	cache := envOr("CONDUIT_CACHE", "/var/tmp/conduit")
	var o options
	flag.StringVar(&o.config, "config", "images.yaml", "image list")
	flag.StringVar(&o.root, "root", ".", "repository root (Go packages are relative to it)")
	flag.StringVar(&o.out, "out", filepath.Join(cache, "images"), "directory of the OCI tarballs")
	flag.StringVar(&o.registry, "registry", "localhost/conduit", "image registry (references are <registry>/<name>:<tag>)")
	flag.StringVar(&o.tag, "tag", "dev", "image tag")
	flag.StringVar(&o.ldflags, "ldflags", "-s -w", "go build -ldflags")
	flag.StringVar(&o.tags, "tags", "grpcnotrace", "go build -tags (grpcnotrace: without grpc-go's x/net/trace, 2 MB less per binary)")
	flag.StringVar(&o.only, "only", "", "comma-separated image names to build (default: all)")
	flag.StringVar(&o.containerd, "containerd", filepath.Join(cache, "cluster/run/containerd/containerd.sock"),
		"containerd socket to import into when it exists (empty: never import)")
	flag.BoolVar(&o.push, "push", false, "push to the registry instead of writing tarballs (local images are skipped)")
	flag.BoolVar(&o.insecure, "insecure", false, "allow a plain-HTTP registry when pushing")
	flag.BoolVar(&o.print, "print", false, "print name=reference of every image and exit")
	flag.StringVar(&o.version, "version", "dev", "value of the org.opencontainers.image.version label")
	flag.StringVar(&o.revision, "revision", "", "value of the org.opencontainers.image.revision label")
	flag.Parse()

	log := logging.New(os.Stderr, "imagebuild", slog.LevelInfo, "text")
	procutil.Setup(log)
	ctx, cancel := procutil.SignalContext(context.Background())
	defer cancel()
	if err := run(ctx, log, o); err != nil {
		log.Error("failed", "err", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, log *slog.Logger, o options) error {
	data, err := os.ReadFile(o.config)
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	cfg, err := ParseConfig(data, func(k string) string {
		if k == "CONDUIT_CACHE" {
			return envOr(k, "/var/tmp/conduit")
		}
		if k == "K8S_CACHE" {
			return envOr(k, filepath.Join(envOr("CONDUIT_CACHE", "/var/tmp/conduit"), "k8s"))
		}
		return os.Getenv(k)
	})
	if err != nil {
		return err
	}
	if o.print {
		for _, e := range cfg.Images {
			fmt.Printf("%s=%s\n", e.Name, e.Ref(o.registry, o.tag))
		}
		return nil
	}
	want := map[string]bool{}
	for _, n := range strings.FieldsFunc(o.only, func(r rune) bool { return r == ',' || r == ' ' }) {
		want[n] = true
	}
	for n := range want {
		if !cfg.has(n) {
			return fmt.Errorf("imagebuild: -only %s: no such image in %s", n, o.config)
		}
	}

	// One base layer for the whole build: its /etc/passwd lists every user of the list.
	ids := map[[2]int]bool{}
	for _, e := range cfg.Images {
		uid, gid, _ := e.IDs()
		ids[[2]int{uid, gid}] = true
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		return fmt.Errorf("imagebuild: CA bundle for the base layer (apt-get install ca-certificates): %w", err)
	}
	base, err := layer(baseTree(usersFor(ids), ca))
	if err != nil {
		return err
	}
	extras := map[string]v1.Layer{}

	tmp, err := os.MkdirTemp("", "imagebuild-")
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	defer os.RemoveAll(tmp)

	var built, skipped, failed []string
	for _, e := range cfg.Images {
		if ctx.Err() != nil {
			return fmt.Errorf("imagebuild: %w", ctx.Err())
		}
		if len(want) > 0 && !want[e.Name] {
			continue
		}
		if o.push && e.Local {
			continue
		}
		if why := e.SourceMissing(o.root); why != "" {
			log.Warn("skipping image", "image", e.Name, "reason", why)
			skipped = append(skipped, e.Name)
			continue
		}
		start := time.Now()
		bin, err := binary(ctx, e, o, tmp)
		if err != nil {
			// Build the other images anyway (the cluster's own, the test apps), fail at the end.
			log.Error("build failed", "image", e.Name, "err", err)
			failed = append(failed, e.Name)
			continue
		}
		spec := ImageSpec{BinaryName: e.BinaryName(), Binary: bin, Base: base, Args: e.Args,
			Labels: map[string]string{
				"org.opencontainers.image.source":   "https://github.com/conduit-mesh/conduit",
				"org.opencontainers.image.version":  o.version,
				"org.opencontainers.image.revision": o.revision,
				"org.opencontainers.image.title":    e.Name,
			}}
		spec.UID, spec.GID, _ = e.IDs()
		for _, x := range e.Extras {
			if extras[x] == nil {
				t, err := iptablesTree() // the only extra so far (validated by ParseConfig)
				if err != nil {
					return err
				}
				if extras[x], err = layer(t); err != nil {
					return err
				}
			}
			spec.Extras = append(spec.Extras, extras[x])
		}
		img, err := assemble(spec)
		if err != nil {
			return fmt.Errorf("imagebuild: %s: %w", e.Name, err)
		}
		ref := e.Ref(o.registry, o.tag)
		if o.push {
			if err := push(ctx, img, ref, o.insecure); err != nil {
				return err
			}
			log.Info("pushed", "image", ref, "took", time.Since(start).Round(time.Millisecond))
			built = append(built, e.Name)
			continue
		}
		changed, err := save(img, e, ref, o)
		if err != nil {
			return err
		}
		imported := false
		if changed {
			if imported, err = importImage(ctx, o.containerd, filepath.Join(o.out, e.Name+".tar")); err != nil {
				return err
			}
		}
		d, _ := img.Digest()
		log.Info("image", "ref", ref, "digest", d.String()[:19], "changed", changed, "imported", imported,
			"took", time.Since(start).Round(time.Millisecond))
		built = append(built, e.Name)
	}
	log.Info("done", "built", len(built), "skipped", strings.Join(skipped, ","))
	if len(failed) > 0 {
		return fmt.Errorf("imagebuild: could not build %s", strings.Join(failed, ", "))
	}
	return nil
}

func (c *Config) has(n string) bool {
	for _, e := range c.Images {
		if e.Name == n {
			return true
		}
	}
	return false
}

// binary returns the executable of an entry: built from its Go package, or read from its file.
func binary(ctx context.Context, e Entry, o options, tmp string) ([]byte, error) {
	if e.Binary != "" {
		b, err := os.ReadFile(e.Binary)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: %s: %w", e.Name, err)
		}
		return b, nil
	}
	out := filepath.Join(tmp, e.Name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", o.tags, "-ldflags", o.ldflags, "-o", out, e.Package)
	cmd.Dir = filepath.Join(o.root, e.Dir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("imagebuild: %s: go build %s: %w", e.Name, e.Package, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %s: %w", e.Name, err)
	}
	return b, nil
}

// save writes <out>/<name>.tar unless the archive there already holds this exact image (same
// manifest digest and reference, recorded in <name>.digest). It reports whether it wrote.
func save(img v1.Image, e Entry, ref string, o options) (bool, error) {
	d, err := img.Digest()
	if err != nil {
		return false, fmt.Errorf("imagebuild: %s: %w", e.Name, err)
	}
	file := filepath.Join(o.out, e.Name+".tar")
	stamp := filepath.Join(o.out, e.Name+".digest")
	id := d.String() + " " + ref + "\n"
	if old, err := os.ReadFile(stamp); err == nil && string(old) == id {
		if _, err := os.Stat(file); err == nil {
			return false, nil
		}
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	if err := writeArchiveFile(file, img, ref, tag); err != nil {
		return false, fmt.Errorf("imagebuild: %s: %w", e.Name, err)
	}
	if err := os.WriteFile(stamp, []byte(id), 0o644); err != nil {
		return false, fmt.Errorf("imagebuild: %s: %w", e.Name, err)
	}
	return true, nil
}

// importImage loads an archive into the k8s.io namespace of the local cluster's containerd,
// when that containerd is running. It reports whether it imported.
func importImage(ctx context.Context, sock, file string) (bool, error) {
	if sock == "" {
		return false, nil
	}
	if _, err := os.Stat(sock); errors.Is(err, os.ErrNotExist) {
		return false, nil // cluster not running: cluster-up imports the archives
	}
	out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "-n", "k8s.io", "images", "import", file).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("imagebuild: ctr images import %s: %w: %s", file, err, out)
	}
	return true, nil
}

// push writes the image to a registry with the credentials of ~/.docker/config.json.
func push(ctx context.Context, img v1.Image, ref string, insecure bool) error {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return fmt.Errorf("imagebuild: image reference %q: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("imagebuild: push %s: %w", ref, err)
	}
	return nil
}
