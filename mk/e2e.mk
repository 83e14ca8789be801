# The local single-node Kubernetes cluster (e2e/cluster/) and the end-to-end tests (e2e/).
#   make cluster-up      install host packages, build Kubernetes once (cached), start the cluster
#   make cluster-down    stop it and restore the host (WIPE=1 also erases the cluster's state)
#   make e2e             everything above, the images, then the e2e tests; the cluster stays up
#                        (E2E_TEARDOWN=1: take it down afterwards, as CI does)
#   make e2e E2E_RUN=TestCluster     only matching tests
# Binaries and build caches: $(CONDUIT_CACHE)/k8s; cluster state: $(CONDUIT_CACHE)/cluster;
# kubeconfig: $(CONDUIT_CACHE)/cluster/admin.kubeconfig.
CLUSTER_DIR  ?= $(CONDUIT_CACHE)/cluster
KUBECONFIG_E2E := $(CLUSTER_DIR)/admin.kubeconfig
E2E_RUN      ?=
E2E_TIMEOUT  ?= 40m
E2E_TEARDOWN ?= 0
CLUSTER_ENV  := CONDUIT_CACHE=$(CONDUIT_CACHE) CLUSTER_DIR=$(CLUSTER_DIR)

.PHONY: cluster-deps
cluster-deps: ## Install the cluster's host packages (containerd, runc, CNI, iptables, ...); idempotent.
	@bash e2e/cluster/deps.sh

.PHONY: cluster-build
cluster-build: ## Build Kubernetes, etcd, CoreDNS and pause into $(CONDUIT_CACHE)/k8s/bin (once: ~6 min).
	@$(CLUSTER_ENV) bash e2e/cluster/build.sh

.PHONY: cluster-images
cluster-images: imagebuild
	@CONDUIT_CACHE=$(CONDUIT_CACHE) $(IMAGEBUILD) $(IMAGEBUILD_FLAGS) -only pause,coredns

.PHONY: cluster-up
cluster-up: cluster-deps cluster-build cluster-images ## Start the local cluster (kubeconfig: $(CONDUIT_CACHE)/cluster/admin.kubeconfig).
	@$(CLUSTER_ENV) bash e2e/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and restore the host (WIPE=1 also erases its state).
	@$(CLUSTER_ENV) bash e2e/cluster/down.sh

.PHONY: e2e
e2e: build cluster-deps cluster-build images cluster-up ## End-to-end tests on the local cluster (brought up if needed).
	@rc=0; \
	KUBECONFIG=$(KUBECONFIG_E2E) E2E_REGISTRY=$(REGISTRY) E2E_TAG=$(TAG) E2E_MESH=$(CURDIR)/bin/mesh \
	  E2E_KUBECTL=$(CONDUIT_CACHE)/k8s/bin/kubectl E2E_ARTIFACTS=$(CURDIR)/e2e/artifacts \
	  go test -tags e2e ./e2e/... -v -count=1 -timeout $(E2E_TIMEOUT) $(if $(E2E_RUN),-run '$(E2E_RUN)') || rc=$$?; \
	if [ "$(E2E_TEARDOWN)" = 1 ]; then $(CLUSTER_ENV) bash e2e/cluster/down.sh || rc=1; fi; \
	exit $$rc
