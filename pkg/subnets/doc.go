// Package subnets reads the lists of IPv4 and IPv6 networks in Conduit's
// settings: proxy-init's subnets to skip (config.conduit.dev/skip-subnets,
// --subnets-to-ignore) and the proxy's cluster networks
// (CONDUIT_PROXY_CLUSTER_NETWORKS, the Helm value clusterNetworks), so that
// the injector accepts exactly the lists the proxy and proxy-init do.
package subnets
