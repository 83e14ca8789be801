// Package client is the host side of conduit.plugin.v1: a typed client for an
// extension reached over a gRPC connection, whether go-plugin's connection to
// a plugin subprocess (the mesh CLI, see pkg/pluginhost) or a network
// connection to an extension's controller (the injector and destination
// hooks), or an in-process server (package sdktest).
//
// Every capability method first checks that the extension declares the
// capability in its Info, and otherwise returns an error wrapping
// ErrNotSupported that names the extension and what it does provide.
package client
