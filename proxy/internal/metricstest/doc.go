// Package metricstest holds the test helpers that read a proxy's metrics
// registry and make connections end the ways the metrics tell apart
// (a clean close, a reset), shared by the inbound and outbound tests.
package metricstest
