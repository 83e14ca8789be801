// Package plugin is the viz extension as the plugin SDK sees it: its Info,
// its CLI commands (Commander), its manifests (Installer), its checks
// (Checker) and its injector hook (InjectorHook, from package hooks).
// cmd/mesh-viz serves it to the mesh CLI; the viz controller serves package
// hooks alone to the injector.
package plugin
