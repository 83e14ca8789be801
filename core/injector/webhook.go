package injector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prometheus/client_golang/prometheus"
)

// WebhookPath is where the API server sends AdmissionReviews.
const WebhookPath = "/inject"

// maxReviewBytes bounds a request body (the API server's own limit is 3 MiB).
const maxReviewBytes = 4 << 20

// NamespaceLookup returns the labels and annotations of a namespace (a
// lister in production, a map in tests). A missing namespace yields nils.
type NamespaceLookup func(name string) (labels, annotations map[string]string, err error)

// EventSink records a Warning Event about a pod being admitted.
type EventSink interface {
	Warn(ctx context.Context, pod *corev1.Pod, namespace, reason, message string)
}

// Webhook serves the AdmissionReview v1 endpoint.
type Webhook struct {
	Injector   *Injector
	Namespaces NamespaceLookup
	Events     EventSink // may be nil
	Log        *slog.Logger
	Metrics    *Metrics // may be nil
}

// Metrics of the webhook.
type Metrics struct {
	Admissions *prometheus.CounterVec
	Latency    prometheus.Histogram
}

// NewMetrics registers the webhook metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conduit_injector_admissions_total",
			Help: "Pod admission reviews by result (injected, skipped, denied, error).",
		}, []string{"result"}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "conduit_injector_admission_duration_seconds",
			Help:    "Time to answer one admission review.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
	}
	reg.MustRegister(m.Admissions, m.Latency)
	return m
}

func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		http.Error(rw, "injector: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		http.Error(rw, "injector: request body unreadable or above 4 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(rw, "injector: body is not an admission.k8s.io/v1 AdmissionReview with a request", http.StatusBadRequest)
		return
	}
	resp, result, err := w.review(r.Context(), review.Request)
	if err != nil {
		// Not an admission answer: an AdmissionReview with allowed=false
		// is a rejection whatever the webhook's failurePolicy, while an
		// HTTP error is a failed call, which the failurePolicy decides
		// (Ignore: the pod is admitted unchanged).
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		w.observe(start, result)
		return
	}
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}
	data, err := json.Marshal(out)
	if err != nil {
		http.Error(rw, "injector: encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	_, _ = rw.Write(data)
	w.observe(start, result)
}

func (w *Webhook) observe(start time.Time, result string) {
	if w.Metrics != nil {
		w.Metrics.Admissions.WithLabelValues(result).Inc()
		w.Metrics.Latency.Observe(time.Since(start).Seconds())
	}
}

// review answers one request; result is the metric label. An error means
// that the injector could not decide: it is answered with an HTTP error, so
// that the webhook's failurePolicy decides (never a silent skip, nor a
// rejection of pods that may not even ask for the proxy).
func (w *Webhook) review(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string, error) {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create || req.SubResource != "" {
		return allow, "skipped", nil
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		w.Log.Error("undecodable pod", "namespace", req.Namespace, "err", err)
		return nil, "error", fmt.Errorf("conduit injector: cannot decode the pod: %w", err)
	}
	log := w.Log.With("namespace", req.Namespace, "pod", podName(&pod))
	nsLabels, nsAnn, err := w.Namespaces(req.Namespace)
	if err != nil {
		log.Error("namespace lookup", "err", err)
		return nil, "error", fmt.Errorf("conduit injector: namespace %s: %w", req.Namespace, err)
	}
	dryRun := req.DryRun != nil && *req.DryRun
	res, err := w.Injector.Inject(ctx, Request{Pod: &pod, Namespace: req.Namespace, NamespaceLabels: nsLabels, NamespaceAnnotations: nsAnn, DryRun: dryRun})
	var denial *Denial
	switch {
	case errors.As(err, &denial):
		log.Info("pod refused", "reason", denial.Message)
		return deny(denial.Message), "denied", nil
	case err != nil:
		log.Error("injection failed", "err", err)
		return nil, "error", fmt.Errorf("conduit injector: %w", err)
	}
	resp := &admissionv1.AdmissionResponse{Allowed: true, Warnings: res.Warnings}
	for _, msg := range res.Warnings {
		log.Warn("injected with a warning", "warning", msg)
		if w.Events != nil && !dryRun {
			w.Events.Warn(ctx, &pod, req.Namespace, "ConduitInjection", msg)
		}
	}
	if !res.Injected {
		log.Debug("pod not injected", "reason", res.Reason)
		return resp, "skipped", nil
	}
	patch, err := json.Marshal(res.Patch)
	if err != nil {
		return nil, "error", fmt.Errorf("conduit injector: encode patch: %w", err)
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	log.Info("pod injected")
	return resp, "injected", nil
}

func deny(msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: msg,
	}}
}

func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName + "*"
}
