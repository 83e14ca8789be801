package identity

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// serviceAccountPrefix starts the username the API server gives a ServiceAccount token.
const serviceAccountPrefix = "system:serviceaccount:"

// Name returns the workload identity of ServiceAccount sa in namespace ns:
// "<sa>.<ns>.serviceaccount.identity.<controlPlaneNS>.<trustDomain>".
func Name(sa, ns, controlPlaneNS, trustDomain string) string {
	return sa + "." + ns + ".serviceaccount.identity." + controlPlaneNS + "." + trustDomain
}

// ServiceAccount is an authenticated Kubernetes ServiceAccount.
type ServiceAccount struct {
	Namespace string
	Name      string
}

// ParseServiceAccountUsername splits "system:serviceaccount:<ns>:<sa>", the
// username the API server authenticates a ServiceAccount token as.
func ParseServiceAccountUsername(username string) (ServiceAccount, error) {
	rest, ok := strings.CutPrefix(username, serviceAccountPrefix)
	if !ok {
		return ServiceAccount{}, fmt.Errorf("identity: %q is not a ServiceAccount (want %s<namespace>:<name>)", username, serviceAccountPrefix)
	}
	ns, sa, ok := strings.Cut(rest, ":")
	if !ok || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return ServiceAccount{}, fmt.Errorf("identity: malformed ServiceAccount username %q (want %s<namespace>:<name>)", username, serviceAccountPrefix)
	}
	// Both are DNS-1123 names in Kubernetes; a name with a dot would make the identity ambiguous.
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return ServiceAccount{}, fmt.Errorf("identity: namespace %q of %q: %s", ns, username, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
		return ServiceAccount{}, fmt.Errorf("identity: ServiceAccount name %q of %q: %s", sa, username, strings.Join(errs, "; "))
	}
	return ServiceAccount{Namespace: ns, Name: sa}, nil
}
