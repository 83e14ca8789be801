// Package metrics turns the proxies' Prometheus metrics into the viz
// extension's golden metrics: it names Kubernetes resources, builds the PromQL
// (request rate, success rate, latency histograms, TCP connections, edges),
// queries Prometheus' HTTP API and shapes the results into rows per resource.
// The metrics API serves it; the CLI and the dashboard only render its rows.
package metrics
