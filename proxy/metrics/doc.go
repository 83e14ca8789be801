// Package metrics keeps the proxy's request and TCP counters with Linkerd's
// metric names and labels (request_total, response_total,
// response_latency_ms, tcp_*) and renders them in the Prometheus text format.
// Recording is lock-free once a label set has been seen and never allocates.
package metrics
