// Package v1alpha2 holds the Go types of the conduit.dev/v1alpha2 API group:
// ServiceProfile (plural serviceprofiles), the per-service routes, retry budget
// and traffic split that the destination service serves to the proxies.
//
// The types are hand-written, with hand-written DeepCopy methods
// (zz_deepcopy.go). Clients read them through the dynamic client and convert
// with FromUnstructured; the CRD manifest lives in
// charts/conduit-crds/templates/serviceprofile.yaml.
package v1alpha2
