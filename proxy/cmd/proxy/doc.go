// Command proxy is Conduit's data-plane sidecar. It is configured entirely
// through CONDUIT_PROXY_* environment variables (see docs/proxy.md).
package main
