// Package podports resolves the port names of a pod's containers, or of a
// Service's own ports, for ports.Parse. It is apart from package ports so
// that the proxy and proxy-init, which read only numbers, do not link the
// Kubernetes API types.
package podports
