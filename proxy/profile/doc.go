// Package profile compiles a service profile from the destination API into
// what the request path needs: route matching (method and path regex),
// response classification, timeouts, retryability, a retry budget and a
// weighted traffic split.
package profile
