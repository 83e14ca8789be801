// Package install renders the viz extension's embedded Helm chart in-process
// (helm.sh/helm/v3's engine, no Tiller, no release): the manifests printed by
// `mesh viz install` and the object list printed by `mesh viz uninstall`.
package install
