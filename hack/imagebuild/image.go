package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layer turns a tree into a gzip-compressed OCI layer. Compression is deterministic (no
// header timestamps), so equal trees give equal digests.
func layer(t tree) (v1.Layer, error) {
	raw, err := t.tar()
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: layer: %w", err)
	}
	return l, nil
}

// ImageSpec is what assemble needs to know about one image.
type ImageSpec struct {
	BinaryName string
	Binary     []byte
	UID, GID   int
	Args       []string
	Labels     map[string]string
	Base       v1.Layer   // shared by every image of a build
	Extras     []v1.Layer // e.g. iptables
}

// assemble builds base + extras + application layer with an OCI config that runs the binary
// as the entry's user.
func assemble(s ImageSpec) (v1.Image, error) {
	app := tree{}
	app.file("/usr/local/bin/"+s.BinaryName, 0o755, s.Binary)
	appLayer, err := layer(app)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	layers := append(append([]v1.Layer{s.Base}, s.Extras...), appLayer)
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "conduit imagebuild"}})
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("imagebuild: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: []string{"/usr/local/bin/" + s.BinaryName},
		Cmd:        s.Args,
		Env: []string{
			"PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
		},
		User:       strconv.Itoa(s.UID) + ":" + strconv.Itoa(s.GID),
		WorkingDir: "/",
		Labels:     s.Labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: config: %w", err)
	}
	return img, nil
}

// writeOCIArchive writes img as a tar of an OCI image layout whose index names the image ref
// (the annotation containerd's importer uses), with every blob once and fixed times.
func writeOCIArchive(w io.Writer, img v1.Image, ref, tag string) error {
	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	putBlob := func(h v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
		rc, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		hdr := &tar.Header{Name: "blobs/" + h.Algorithm + "/" + h.Hex, Mode: 0o644, Size: size, ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.Copy(tw, rc)
		if err == nil && n != size {
			err = fmt.Errorf("blob %s: wrote %d bytes, want %d", h, n, size)
		}
		return err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("imagebuild: manifest: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("imagebuild: manifest: %w", err)
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("imagebuild: config: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("imagebuild: config: %w", err)
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Digest:    digest,
			Size:      int64(len(manifest)),
			Platform:  &v1.Platform{Architecture: "amd64", OS: "linux"},
			Annotations: map[string]string{
				"io.containerd.image.name":          ref,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("imagebuild: index: %w", err)
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return fmt.Errorf("imagebuild: archive: %w", err)
	}
	if err := put("index.json", indexJSON); err != nil {
		return fmt.Errorf("imagebuild: archive: %w", err)
	}
	bytesOpener := func(b []byte) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	if err := putBlob(digest, int64(len(manifest)), bytesOpener(manifest)); err != nil {
		return fmt.Errorf("imagebuild: archive: %w", err)
	}
	if err := putBlob(cfgName, int64(len(config)), bytesOpener(config)); err != nil {
		return fmt.Errorf("imagebuild: archive: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("imagebuild: layers: %w", err)
	}
	seen := map[v1.Hash]bool{}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("imagebuild: layer: %w", err)
		}
		if seen[d] {
			continue
		}
		seen[d] = true
		size, err := l.Size()
		if err != nil {
			return fmt.Errorf("imagebuild: layer: %w", err)
		}
		if err := putBlob(d, size, l.Compressed); err != nil {
			return fmt.Errorf("imagebuild: archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("imagebuild: archive: %w", err)
	}
	return nil
}

// writeArchiveFile writes the archive atomically (temp file + rename), so a reader never sees
// half an image.
func writeArchiveFile(file string, img v1.Image, ref, tag string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-*.tar")
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeOCIArchive(tmp, img, ref, tag); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	return nil
}
