// Package sdk is the Conduit plugin SDK: the small interfaces an extension
// implements and the Serve function that runs it as a hashicorp/go-plugin
// gRPC plugin. See docs/extensions.md.
package sdk
