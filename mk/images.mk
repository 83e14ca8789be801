# OCI images of every binary the charts reference, built by hack/imagebuild from images.yaml.
#   make images                          build all, write $(CONDUIT_CACHE)/images/<name>.tar, import
#                                        into the local cluster's containerd when it runs
#   make images IMAGES=testapp,proxy     only these
#   make images-push REGISTRY=ghcr.io/me TAG=v0.1.0 [PUSH_FLAGS=-insecure]
#   make images-list                     print name=reference
REGISTRY ?= localhost/conduit
TAG      ?= dev
IMAGES   ?=
# Images are reproducible: the date stamped in their binaries is the commit's, not the build's.
IMAGE_DATE    := $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
IMAGE_LDFLAGS := -s -w \
  -X github.com/conduit-mesh/conduit/pkg/version.Version=$(VERSION) \
  -X github.com/conduit-mesh/conduit/pkg/version.Commit=$(COMMIT) \
  -X github.com/conduit-mesh/conduit/pkg/version.Date=$(IMAGE_DATE)
IMAGEBUILD := $(TOOLS)/imagebuild
IMAGEBUILD_FLAGS = -config images.yaml -registry $(REGISTRY) -tag $(TAG) -ldflags "$(IMAGE_LDFLAGS)" \
  -tags "$(GO_TAGS)" -version $(VERSION) -revision $(COMMIT)

.PHONY: imagebuild
imagebuild:
	@mkdir -p $(TOOLS)
	@go build -o $(IMAGEBUILD) ./hack/imagebuild

.PHONY: images
images: imagebuild ## Build the OCI images (images.yaml) into $(CONDUIT_CACHE)/images and import them into the local cluster.
	CONDUIT_CACHE=$(CONDUIT_CACHE) $(IMAGEBUILD) $(IMAGEBUILD_FLAGS) -only "$(IMAGES)"

.PHONY: images-push
images-push: imagebuild ## Push the images to REGISTRY with TAG (e.g. make images-push REGISTRY=ghcr.io/me TAG=v0.1.0).
	@test "$(REGISTRY)" != "localhost/conduit" || { echo "images-push: set REGISTRY=<your registry>"; exit 2; }
	CONDUIT_CACHE=$(CONDUIT_CACHE) $(IMAGEBUILD) $(IMAGEBUILD_FLAGS) -only "$(IMAGES)" -push $(PUSH_FLAGS)

.PHONY: images-list
images-list: imagebuild ## Print name=reference of every image.
	@CONDUIT_CACHE=$(CONDUIT_CACHE) $(IMAGEBUILD) $(IMAGEBUILD_FLAGS) -print
