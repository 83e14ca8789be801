// Package apis holds the Go types of Conduit's custom resources, one package
// per group and version (conduit/v1alpha2: ServiceProfile).
package apis
