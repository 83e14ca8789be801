// Package e2e holds the end-to-end test of the CLI's install lifecycle on a
// real cluster (build tag e2e): install, check, upgrade, uninstall. It
// removes the control plane, so it runs alone, not with ./e2e/...:
//
//	make build images
//	E2E_LIFECYCLE=1 KUBECONFIG=/var/tmp/conduit/cluster/admin.kubeconfig \
//	  go test -tags e2e ./cli/e2e -v -count=1 -timeout 20m
package e2e
