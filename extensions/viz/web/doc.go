// Package web is the viz dashboard: a small server-rendered (html/template)
// site over the metrics API — namespaces and workloads with their golden
// metrics, and a workload page with its edges and routes. It loads nothing
// from outside (a strict Content-Security-Policy) and needs no Kubernetes access.
package web
