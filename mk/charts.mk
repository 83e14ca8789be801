# The core's Helm charts (charts/): lint them with the pinned helm.
HELM_VERSION := v3.22.0
CHART_TEST_IDENTITY := --set-file identity.trustAnchorsPEM=cli/cmd/testdata/ca.crt \
  --set-file identity.issuer.crtPEM=cli/cmd/testdata/issuer.crt \
  --set-file identity.issuer.keyPEM=cli/cmd/testdata/issuer.key

.PHONY: charts-lint
charts-lint: deps ## helm lint --strict the core's charts (conduit-crds, conduit-control-plane).
	helm lint --strict charts/conduit-crds
	helm lint --strict charts/conduit-control-plane $(CHART_TEST_IDENTITY)
	helm lint --strict charts/conduit-control-plane $(CHART_TEST_IDENTITY) --set highAvailability=true
