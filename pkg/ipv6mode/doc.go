// Package ipv6mode reads the dual-stack mode (auto, on or off) that
// proxy-init (--ipv6), the proxy (CONDUIT_PROXY_IPV6) and the injector (the
// config.conduit.dev/ipv6 annotation and proxy.ipv6 of conduit-config) all
// take. The injector hands one pod's mode to both proxy-init and the proxy:
// a value the injector let through and either of them refused would fail
// the pod at start, and one that they read apart would leave its IPv6
// connections redirected to a proxy not listening on IPv6, or the other way
// round. One definition of the modes and one parser keep them agreed.
package ipv6mode
