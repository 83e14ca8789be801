# Proxy benchmarks (owned by the proxy). Included by the top-level Makefile.

FORTIO_VERSION := v1.66.5
# Extra flags for proxybench, e.g. BENCH_PROXY_FLAGS="-d 5s -rates 1000 -v".
BENCH_PROXY_FLAGS ?=

$(TOOLS)/fortio:
	@mkdir -p $(TOOLS)
	cd /tmp && GOWORK=off GOBIN=$(TOOLS) go install fortio.org/fortio@$(FORTIO_VERSION)

.PHONY: bench-proxy
bench-proxy: $(TOOLS)/fortio ## Proxy load benchmark: direct vs 2 Conduit proxies (mTLS) vs nginx vs haproxy; prints one table.
	@mkdir -p bin
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/proxy ./proxy/cmd/proxy
	go build -o bin/proxybench ./proxy/bench/proxybench
	bin/proxybench -proxy bin/proxy -fortio $(TOOLS)/fortio $(BENCH_PROXY_FLAGS)

.PHONY: bench-proxy-go
bench-proxy-go: ## Go micro-benchmarks of the proxy's hot paths (detection, balancer pick, headers, metrics, tap).
	go test -run '^$$' -bench . -benchmem ./proxy/detect ./proxy/balance ./proxy/inbound ./proxy/outbound ./proxy/metrics ./proxy/tap
