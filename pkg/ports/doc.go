// Package ports reads the port lists of Conduit's settings and annotations:
// config.conduit.dev/opaque-ports, skip-inbound-ports and skip-outbound-ports,
// `mesh install --default-opaque-ports`, the proxy's
// CONDUIT_PROXY_INBOUND_OPAQUE_PORTS and proxy-init's flags.
//
// The injector validates a list, the proxy and proxy-init apply it, and the
// destination service tells every client proxy about it; each reading it its
// own way once let a list through the injector that the proxy then refused
// at start ("3306,": a crash loop), and one that the proxy applied but the
// destination service did not ("8000 - 8100": a client proxy waiting for a
// server-speaks-first client to speak). One parser makes them agree.
package ports
