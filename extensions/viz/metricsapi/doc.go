// Package metricsapi is the viz metrics API: an HTTP/JSON service in the
// conduit-viz namespace that answers stat, edges and routes queries from
// Prometheus and the Kubernetes API (package metrics), and the client the
// CLI (through the API server's service proxy) and the dashboard use.
package metricsapi
