// Package injector is Conduit's proxy injector: a mutating admission webhook
// that adds the proxy (as a native sidecar, or a regular container on
// clusters older than 1.29), the proxy-init init container, the projected
// ServiceAccount token the proxy presents to identity, and the proxy's
// configuration to pods that opt in with the `conduit.dev/inject: enabled`
// annotation (on the pod or its namespace).
//
// The proxy configuration comes from the ConfigMap `conduit-config` (key
// `values`, see Config) in the control-plane namespace, watched so that a
// change applies to pods injected afterwards. The webhook's serving
// certificate lives in the Secret `conduit-injector-tls`; the injector
// creates or renews it when it is missing or about to expire and keeps the
// MutatingWebhookConfiguration's caBundle in sync (see CertManager).
//
// Extensions add to the patch through PatchContributor. docs/injector.md is
// the user-facing reference.
package injector
