# The viz extension: the mesh-viz plugin, the viz-controller image (metrics API,
# dashboard, injector hook) and the viz-prometheus image.
BINARIES += mesh-viz=./extensions/viz/cmd/mesh-viz viz-controller=./extensions/viz/cmd/viz-controller

# Prometheus for the viz-prometheus image: a static build of the upstream Go
# module (Debian's binary is dynamically linked, and images carry no libc).
VIZ_PROMETHEUS_VERSION := v0.316.0
VIZ_PROMETHEUS := $(TOOLS)/viz/prometheus

.PHONY: viz-prometheus
viz-prometheus: $(VIZ_PROMETHEUS) ## Build the static Prometheus binary of the viz-prometheus image.
$(VIZ_PROMETHEUS): extensions/viz/extension.mk
	@mkdir -p $(dir $@)
	CGO_ENABLED=0 GOBIN=$(dir $@) go install -trimpath -ldflags "-s -w" github.com/prometheus/prometheus/cmd/prometheus@$(VIZ_PROMETHEUS_VERSION)
	@touch $@

.PHONY: viz-test
viz-test: ## Unit tests of the viz extension.
	go test -race -count=1 ./extensions/viz/...
images: $(VIZ_PROMETHEUS)
