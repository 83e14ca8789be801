package identity

import (
	"crypto/x509"
	"fmt"
	"time"
)

// ExpiryWarning is how long before expiry CheckExpiry starts to warn.
const ExpiryWarning = 60 * 24 * time.Hour

// Severity of a Finding.
type Severity string

// Severities: a warning lets `mesh check` pass, a failure does not.
const (
	SeverityOK      Severity = "ok"
	SeverityWarning Severity = "warning"
	SeverityFailure Severity = "failure"
)

// Finding is the expiry status of one trust anchor or of the issuer.
type Finding struct {
	// What is "trust anchor" or "issuer".
	What     string
	Subject  string
	NotAfter time.Time
	Severity Severity
	// Message is a full sentence fit for `mesh check`'s output, with the fix.
	Message string
}

// CheckExpiry reports the expiry status of every trust anchor and of the
// issuer at now: a failure for an expired (or not yet valid) certificate, a
// warning when one expires within ExpiryWarning, ok otherwise. issuer may be
// nil. Findings come in input order, the issuer last.
func CheckExpiry(anchors []*x509.Certificate, issuer *x509.Certificate, now time.Time) []Finding {
	out := make([]Finding, 0, len(anchors)+1)
	for _, a := range anchors {
		out = append(out, expiryOf("trust anchor", a, now,
			"rotate the trust anchor with 'mesh identity rotate-anchors' (see docs/identity.md)"))
	}
	if issuer != nil {
		out = append(out, expiryOf("issuer", issuer, now,
			"replace the conduit-identity-issuer Secret with an issuer signed by a current trust anchor (see docs/identity.md)"))
	}
	return out
}

func expiryOf(what string, c *x509.Certificate, now time.Time, fix string) Finding {
	f := Finding{What: what, Subject: c.Subject.CommonName, NotAfter: c.NotAfter}
	if f.Subject == "" {
		f.Subject = c.Subject.String()
	}
	left := c.NotAfter.Sub(now)
	switch {
	case now.Before(c.NotBefore):
		f.Severity = SeverityFailure
		f.Message = fmt.Sprintf("%s %q is not valid before %s (check the clocks): %s", what, f.Subject, c.NotBefore.UTC().Format(time.RFC3339), fix)
	case left <= 0:
		f.Severity = SeverityFailure
		f.Message = fmt.Sprintf("%s %q expired at %s: %s", what, f.Subject, c.NotAfter.UTC().Format(time.RFC3339), fix)
	case left <= ExpiryWarning:
		f.Severity = SeverityWarning
		f.Message = fmt.Sprintf("%s %q expires in %d days (%s): %s", what, f.Subject, int(left.Hours()/24), c.NotAfter.UTC().Format(time.RFC3339), fix)
	default:
		f.Severity = SeverityOK
		f.Message = fmt.Sprintf("%s %q is valid until %s", what, f.Subject, c.NotAfter.UTC().Format(time.RFC3339))
	}
	return f
}
