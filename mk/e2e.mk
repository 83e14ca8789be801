# The local single-node Kubernetes cluster (e2e/cluster/) and the end-to-end tests (e2e/).
#   make cluster-up      install host packages, build Kubernetes once (cached), start the cluster
#   make cluster-down    stop it and restore the host (WIPE=1 also erases the cluster's state)
#   make e2e             everything above, the images, then the e2e tests. Afterwards the cluster is
#                        left as it was found: taken down again if this run brought it up (CI, a
#                        fresh machine), kept if it was already up. E2E_TEARDOWN=1 always takes it
#                        down, E2E_TEARDOWN=0 never does.
#   make e2e E2E_RUN=TestCluster     only matching tests
# Binaries and build caches: $(CONDUIT_CACHE)/k8s; cluster state: $(CONDUIT_CACHE)/cluster;
# kubeconfig: $(CONDUIT_CACHE)/cluster/admin.kubeconfig.
CLUSTER_DIR  ?= $(CONDUIT_CACHE)/cluster
KUBECONFIG_E2E := $(CLUSTER_DIR)/admin.kubeconfig
E2E_RUN      ?=
E2E_TIMEOUT  ?= 40m
E2E_TEARDOWN ?= auto
# The packages of make e2e. The control plane's lifecycle (cli/e2e: it removes the mesh it finds,
# installs, upgrades and uninstalls one) runs apart: `make e2e-lifecycle`.
E2E_PKGS     ?= ./e2e/...
E2E_LIFECYCLE ?=
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

.PHONY: cluster-status
cluster-status: ## Show whether the local cluster and each of its components run.
	@$(CLUSTER_ENV) bash e2e/cluster/status.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and restore the host (WIPE=1 also erases its state).
	@$(CLUSTER_ENV) bash e2e/cluster/down.sh

.PHONY: e2e
e2e: build cluster-deps cluster-build images ## End-to-end tests on the local cluster (brought up if needed, and down again if it was down).
	@was_up=0; $(CLUSTER_ENV) bash e2e/cluster/status.sh > /dev/null 2>&1 && was_up=1; \
	$(CLUSTER_ENV) bash e2e/cluster/up.sh || { [ $$was_up = 1 ] || $(CLUSTER_ENV) bash e2e/cluster/down.sh; exit 1; }; \
	rc=0; \
	E2E_RUN_ID=run-$$(date +%s) KUBECONFIG=$(KUBECONFIG_E2E) E2E_REGISTRY=$(REGISTRY) E2E_TAG=$(TAG) E2E_MESH=$(CURDIR)/bin/mesh \
	  E2E_KUBECTL=$(CONDUIT_CACHE)/k8s/bin/kubectl E2E_ARTIFACTS=$(CURDIR)/e2e/artifacts E2E_LIFECYCLE=$(E2E_LIFECYCLE) \
	  go test -tags e2e -p 1 $(E2E_PKGS) -v -count=1 -timeout $(E2E_TIMEOUT) $(if $(E2E_RUN),-run '$(E2E_RUN)') || rc=$$?; \
	if [ "$(E2E_TEARDOWN)" = 1 ] || { [ "$(E2E_TEARDOWN)" = auto ] && [ $$was_up = 0 ]; }; then \
	  $(CLUSTER_ENV) bash e2e/cluster/down.sh || rc=1; \
	else echo "e2e: the cluster stays up (make cluster-down to stop it)"; fi; \
	exit $$rc

.PHONY: e2e-lifecycle
e2e-lifecycle: ## The whole life of a control plane on the local cluster: install, check, upgrade, uninstall (cli/e2e; removes the mesh and extensions make e2e left).
	@$(MAKE) --no-print-directory e2e E2E_PKGS=./cli/e2e E2E_LIFECYCLE=1
