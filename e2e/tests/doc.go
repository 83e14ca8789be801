// Package tests holds Conduit's end-to-end tests. Every test file carries the
// build tag e2e, so `go test ./...` (make test) compiles none of them; `make
// e2e` brings the local cluster up and runs them with -tags e2e. Each test
// works in its own namespaces (framework.NewNamespace), deleted afterwards.
package tests
