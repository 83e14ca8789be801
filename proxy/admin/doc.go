// Package admin serves the proxy's admin endpoints: /metrics (Prometheus
// text), /ready (200 once the proxy has its certificate), /live, and
// /shutdown (POST, loopback clients only) which starts a graceful drain.
package admin
