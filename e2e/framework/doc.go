// Package framework is the harness of Conduit's end-to-end tests, which run
// against the real local cluster (`make e2e`, build tag e2e). It talks to the
// API server with client-go and offers what a test needs: a unique namespace
// per test (deleted afterwards), applying YAML manifests (server-side apply),
// waiting for rollouts and ready pods, exec into pods, port-forwarding,
// running the built CLI (bin/mesh) and kubectl, installing the mesh the way a
// user does, and, when a test fails, collecting the logs and events of its
// namespaces into e2e/artifacts/<test>/ (the path is printed).
//
// Settings come from the environment that `make e2e` sets: KUBECONFIG,
// E2E_MESH (bin/mesh), E2E_KUBECTL, E2E_REGISTRY and E2E_TAG (image
// references), E2E_ARTIFACTS (artifacts root), E2E_RUN_ID (one per make e2e).
package framework
