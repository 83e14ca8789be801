package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestPushToRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	base, err := layer(baseTree(usersFor(nil), []byte("CA")))
	if err != nil {
		t.Fatal(err)
	}
	img, err := assemble(ImageSpec{BinaryName: "proxy", Binary: []byte("bin"), UID: 2102, GID: 2102, Base: base})
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{Name: "proxy", Package: "./proxy/cmd/proxy"}
	ref := e.Ref(host+"/conduit", "v0.1.0")
	if err := push(context.Background(), img, ref, true); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pulling back %s: %v", ref, err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("registry has %s, pushed %s", d, want)
	}
	cf, err := got.ConfigFile()
	if err != nil || cf.Config.User != "2102:2102" {
		t.Errorf("pulled config user %q (%v)", cf.Config.User, err)
	}
	if err := push(context.Background(), img, "UPPER/case:x", true); err == nil {
		t.Error("pushing to an invalid reference succeeded")
	}
}
