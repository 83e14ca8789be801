// Package kubefixture decodes Kubernetes objects written as multi-document
// YAML, for tests that feed fake clients ("fakes from YAML"): the kinds
// client-go's scheme knows become typed objects for the fake clientset,
// the others (custom resources: ServiceProfiles, ...) unstructured ones
// for the fake dynamic client.
package kubefixture
