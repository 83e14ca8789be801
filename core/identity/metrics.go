package identity

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the identity service's Prometheus metrics.
type Metrics struct {
	issued         prometheus.Counter
	failures       *prometheus.CounterVec
	duration       prometheus.Histogram
	reloads        *prometheus.CounterVec
	issuerExpiry   prometheus.Gauge
	anchorsExpiry  prometheus.Gauge
	anchorsInTrust prometheus.Gauge
}

// NewMetrics registers the identity metrics with reg (nil: not registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "conduit_identity_certificates_issued_total",
			Help: "Leaf certificates issued by Certify.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conduit_identity_certify_failures_total",
			Help: "Certify requests refused or failed, by reason.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "conduit_identity_certify_duration_seconds",
			Help:    "Time to answer a Certify request (TokenReview included).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conduit_identity_issuer_reloads_total",
			Help: "Issuer and trust-anchor reloads, by result (ok, invalid).",
		}, []string{"result"}),
		issuerExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "conduit_identity_issuer_expiry_timestamp_seconds",
			Help: "Expiry (Unix time) of the issuer certificate in use.",
		}),
		anchorsExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "conduit_identity_trust_anchor_expiry_timestamp_seconds",
			Help: "Earliest expiry (Unix time) among the trust anchors in the bundle.",
		}),
		anchorsInTrust: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "conduit_identity_trust_anchors",
			Help: "Number of trust anchors in the bundle.",
		}),
	}
	// Known reasons start at zero so that rate() and alerts see them.
	for _, r := range allReasons {
		m.failures.WithLabelValues(string(r))
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("invalid")
	if reg != nil {
		reg.MustRegister(m.issued, m.failures, m.duration, m.reloads, m.issuerExpiry, m.anchorsExpiry, m.anchorsInTrust)
	}
	return m
}

func (m *Metrics) observeIssuer(i *Issuer) {
	m.reloads.WithLabelValues("ok").Inc()
	m.issuerExpiry.Set(float64(i.CA.Cert.NotAfter.Unix()))
	earliest := i.Anchors[0].NotAfter
	for _, a := range i.Anchors[1:] {
		if a.NotAfter.Before(earliest) {
			earliest = a.NotAfter
		}
	}
	m.anchorsExpiry.Set(float64(earliest.Unix()))
	m.anchorsInTrust.Set(float64(len(i.Anchors)))
}
