// Command destbench measures the destination service against a real
// kube-apiserver: it creates N selector-less headless Services with M
// endpoints each, runs `controller destination` as a child process, opens
// concurrent Get streams and measures, for a series of EndpointSlice writes,
// the time from the write to the update on every stream watching that
// Service (p50, p99), and the controller's memory. Run it with
// `make bench-destination`.
package main
