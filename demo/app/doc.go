// Package app implements the demo application's services. Each service is a
// constructor returning an http.Handler or a gRPC server, so tests drive them
// in-process; cmd/demo runs one of them per pod.
package app
