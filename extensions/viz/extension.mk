# The viz extension: the mesh-viz plugin, the viz-controller image (metrics API,
# dashboard, injector hook) and the viz-prometheus image.
BINARIES += mesh-viz=./extensions/viz/cmd/mesh-viz viz-controller=./extensions/viz/cmd/viz-controller

# Prometheus for the viz-prometheus image: a static (CGO_ENABLED=0) build of the
# upstream module, built inside its own source tree so that its go.mod's
# replace/exclude directives apply (Debian's binary is dynamically linked, and
# images carry no libc). A failed build only warns: imagebuild then skips the
# viz-prometheus image, and everything else still builds.
VIZ_PROMETHEUS_VERSION := v0.300.1
VIZ_PROMETHEUS := $(TOOLS)/viz/prometheus

.PHONY: viz-prometheus
viz-prometheus: $(VIZ_PROMETHEUS) ## Build the static Prometheus binary of the viz-prometheus image (once).
$(VIZ_PROMETHEUS):
	@mkdir -p $(dir $@)
	@set -e; src=$(dir $@)src-$(VIZ_PROMETHEUS_VERSION); \
	if [ ! -d $$src ]; then \
	  dir=$$(GOFLAGS=-mod=mod go mod download -json github.com/prometheus/prometheus@$(VIZ_PROMETHEUS_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
	  cp -r $$dir $$src.tmp && chmod -R u+w $$src.tmp && mv $$src.tmp $$src; \
	fi; \
	echo "viz: building Prometheus $(VIZ_PROMETHEUS_VERSION) (static)"; \
	(cd $$src && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $@ ./cmd/prometheus) \
	  || echo "viz: WARNING: could not build Prometheus: the viz-prometheus image will be skipped"

# `make images` builds it first (a no-op once built).
images: $(VIZ_PROMETHEUS)

.PHONY: viz-test
viz-test: ## Unit tests of the viz extension.
	go test -race -count=1 ./extensions/viz/...
