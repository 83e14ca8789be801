# Proxy benchmarks (owned by the proxy). Included by the top-level Makefile.

FORTIO_VERSION := v1.66.5
# Extra flags for proxybench, e.g. BENCH_PROXY_FLAGS="-d 5s -rates 1000 -v".
BENCH_PROXY_FLAGS ?=

$(TOOLS)/fortio:
	@mkdir -p $(TOOLS)
	cd /tmp && GOWORK=off GOBIN=$(TOOLS) go install fortio.org/fortio@$(FORTIO_VERSION)

# The peers of bench-proxy, from Debian: nginx with its stream module (the
# TCP throughput runs), haproxy.
BENCH_DEBS := nginx libnginx-mod-stream haproxy

.PHONY: bench-deps
bench-deps: ## Install the benchmark peers from Debian (nginx with its stream module, haproxy) if missing.
	@{ [ -x /usr/sbin/nginx ] && [ -f /usr/lib/nginx/modules/ngx_stream_module.so ] && [ -x /usr/sbin/haproxy ]; } || \
	  { echo "bench: apt-get install $(BENCH_DEBS)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_DEBS) >/dev/null || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_DEBS) >/dev/null; }; }

.PHONY: bench-proxy
bench-proxy: $(TOOLS)/fortio bench-deps ## Proxy load benchmark: direct vs 2 Conduit proxies (mTLS) vs nginx vs haproxy; prints one table.
	@mkdir -p bin
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/proxy ./proxy/cmd/proxy
	go build -o bin/proxybench ./proxy/bench/proxybench
	bin/proxybench -proxy bin/proxy -fortio $(TOOLS)/fortio $(BENCH_PROXY_FLAGS)

.PHONY: bench-proxy-go
bench-proxy-go: ## Go micro-benchmarks of the proxy's hot paths (detection, balancer pick, headers, metrics, tap).
	go test -run '^$$' -bench . -benchmem ./proxy/detect ./proxy/balance ./proxy/inbound ./proxy/outbound ./proxy/metrics ./proxy/tap ./proxy/internal/h1
