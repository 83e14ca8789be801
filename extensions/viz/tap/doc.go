// Package tap streams live requests from the proxies of a resource's pods
// (`mesh viz tap`) and aggregates them (`mesh viz top`). It reaches each
// proxy's tap server (conduit.tap.v1, 127.0.0.1:4190 in the pod) through a
// Kubernetes port-forward, so the API server's RBAC (`create pods/portforward`)
// decides who may tap what; a SelfSubjectAccessReview first turns a refusal
// into a clear error.
package tap
