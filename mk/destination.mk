# Destination service targets (owned by core/destination). Included by the top-level Makefile.

# Extra flags for destbench, e.g. BENCH_DESTINATION_FLAGS="-services 200 -streams 100".
BENCH_DESTINATION_FLAGS ?=

.PHONY: bench-destination
bench-destination: ## Destination benchmark on the local cluster: 1,000 Services x 10 endpoints, 500 Get streams (p50/p99, memory).
	@mkdir -p bin
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/controller ./core/cmd/controller
	go build -o bin/destbench ./core/destination/bench/destbench
	bin/destbench -controller bin/controller $(BENCH_DESTINATION_FLAGS)
