// Package sdk is the Conduit plugin SDK: the small interfaces an extension
// implements and the Serve function that runs it as a hashicorp/go-plugin
// gRPC plugin speaking conduit.plugin.v1.
//
// An extension implements Extension (Info) and any of the optional
// capabilities — Commander, Installer, Checker, InjectorHook,
// DestinationHook — on the value it passes to Serve. The SDK declares a
// capability to the host if and only if the value implements its interface,
// so a capability is never advertised without an implementation.
//
//	func main() { sdk.Serve(&myExtension{}) }
//
// The hooks also run in the cluster, as plugins of the injector and
// destination: an extension's controller calls ServeHooks to hand out its own
// binary, which calls Serve when LaunchedAsPlugin.
// Helm chart rendering lives in the sub-package chart, so that this package
// stays free of Helm's dependencies. See docs/extensions.md and README.md
// for the compatibility promise.
package sdk
