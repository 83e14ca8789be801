package identity

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"
)

func TestCheckExpiry(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	cert := func(cn string, notBefore, notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter}
	}
	day := 24 * time.Hour
	tests := []struct {
		name    string
		anchors []*x509.Certificate
		issuer  *x509.Certificate
		want    []Severity
		msgs    []string
	}{
		{
			name:    "all fine",
			anchors: []*x509.Certificate{cert("root", now.Add(-day), now.Add(365*day))},
			issuer:  cert("issuer", now.Add(-day), now.Add(61*day)),
			want:    []Severity{SeverityOK, SeverityOK},
			msgs:    []string{`trust anchor "root" is valid until 2027-11-22T00:00:00Z`, `issuer "issuer" is valid until`},
		},
		{
			name:    "issuer within 60 days",
			anchors: []*x509.Certificate{cert("root", now.Add(-day), now.Add(365*day))},
			issuer:  cert("issuer", now.Add(-day), now.Add(60*day)),
			want:    []Severity{SeverityOK, SeverityWarning},
			msgs:    []string{"valid until", `issuer "issuer" expires in 60 days`},
		},
		{
			name:    "one of two anchors expired",
			anchors: []*x509.Certificate{cert("old", now.Add(-400*day), now.Add(-time.Second)), cert("new", now.Add(-day), now.Add(30*day))},
			want:    []Severity{SeverityFailure, SeverityWarning},
			msgs:    []string{`trust anchor "old" expired at`, "rotate-anchors"},
		},
		{
			name:   "issuer expired exactly now",
			issuer: cert("issuer", now.Add(-day), now),
			want:   []Severity{SeverityFailure},
			msgs:   []string{"expired at 2026-11-22T00:00:00Z"},
		},
		{
			name:    "not yet valid",
			anchors: []*x509.Certificate{cert("future", now.Add(time.Hour), now.Add(365*day))},
			want:    []Severity{SeverityFailure},
			msgs:    []string{"not valid before"},
		},
		{name: "nothing", want: []Severity{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckExpiry(tt.anchors, tt.issuer, now)
			if len(got) != len(tt.want) {
				t.Fatalf("%d findings, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, f := range got {
				if f.Severity != tt.want[i] {
					t.Errorf("finding %d: severity %s, want %s (%s)", i, f.Severity, tt.want[i], f.Message)
				}
				if i < len(tt.msgs) && !strings.Contains(f.Message, tt.msgs[i]) {
					t.Errorf("finding %d: message %q does not contain %q", i, f.Message, tt.msgs[i])
				}
			}
		})
	}
}
