// Package hooks is the part of the viz extension that runs in the cluster:
// its Info and its injector hook (InjectorHook), which turns tap on in every
// proxy injected. viz-controller serves it to the injector, which downloads
// and runs that binary; it links none of the CLI or the chart (package
// plugin adds those for mesh-viz), so the binary stays small.
package hooks
