// Command imagebuild builds the OCI images of Conduit from Go, the way ko
// does: each Go main package listed in images.yaml is compiled as a static
// binary (CGO_ENABLED=0) and layered on a minimal base built here (users and
// groups, CA certificates, /tmp), running as a non-root user by default.
//
// Images are written as OCI image-layout tarballs (one per image) that
// `ctr images import` understands, imported into the local e2e cluster's
// containerd when it runs, or pushed to a registry with -push. Nothing needs
// Docker, a daemon or a registry to build. See e2e/README.md for the format
// of images.yaml.
package main
