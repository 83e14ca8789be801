package tap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
	"google.golang.org/grpc"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Port is the proxy's tap port (loopback only, in the pod).
const Port = 4190

// EnabledEnv is the proxy setting that turns tap on.
const EnabledEnv = "CONDUIT_PROXY_TAP_ENABLED"

// Filter selects the requests to tap.
type Filter struct {
	To         *metrics.Resource // outbound requests to this resource
	Method     string
	PathPrefix string
	Authority  string
	MaxRPS     uint32
	Limit      uint32 // stop after this many requests (0: no limit)
}

// Request builds the proxies' ObserveRequest.
func (f Filter) Request() (*tapv1.ObserveRequest, error) {
	m := &tapv1.Match{Method: strings.ToUpper(f.Method), PathPrefix: f.PathPrefix, Authority: f.Authority}
	if f.PathPrefix != "" && !strings.HasPrefix(f.PathPrefix, "/") {
		return nil, fmt.Errorf("tap: --path %q must start with /", f.PathPrefix)
	}
	if t := f.To; t != nil {
		if t.Name == "" {
			return nil, fmt.Errorf("tap: --to must name a resource (e.g. deploy/web), not %s", t)
		}
		m.Direction = tapv1.Direction_OUTBOUND
		if t.Kind == metrics.KindNamespace {
			m.DestinationLabels = map[string]string{"namespace": t.Name}
		} else {
			m.DestinationLabels = map[string]string{"namespace": t.Namespace, metrics.DestinationLabel(t.Kind): t.Name}
		}
	}
	return &tapv1.ObserveRequest{Match: m, MaxRps: f.MaxRPS, Limit: f.Limit}, nil
}

// Target is a pod whose proxy is tapped.
type Target struct{ Namespace, Name string }

// Dialer connects to the tap server of a pod's proxy; close releases it.
type Dialer func(ctx context.Context, t Target) (conn grpc.ClientConnInterface, close func(), err error)

// Event is a tap event of one pod's proxy.
type Event struct {
	Pod   Target
	Event *tapv1.TapEvent
}

// Targets returns the tap-enabled meshed pods of r, and a note on the pods
// that cannot be tapped (not meshed, or injected before viz was installed).
func Targets(ctx context.Context, kc kubernetes.Interface, r metrics.Resource) ([]Target, string, error) {
	pods, err := metrics.PodsOf(ctx, kc, r)
	if err != nil {
		return nil, "", err
	}
	var out []Target
	var unmeshed, disabled []string
	for _, p := range pods {
		switch {
		case !metrics.Meshed(p):
			unmeshed = append(unmeshed, p.Name)
		case !tapEnabled(p):
			disabled = append(disabled, p.Name)
		case p.Status.Phase == corev1.PodRunning:
			out = append(out, Target{p.Namespace, p.Name})
		}
	}
	var notes []string
	if len(unmeshed) > 0 {
		notes = append(notes, fmt.Sprintf("not meshed: %s", strings.Join(unmeshed, ", ")))
	}
	if len(disabled) > 0 {
		notes = append(notes, fmt.Sprintf("tap not enabled (injected before viz was installed: restart them, e.g. kubectl rollout restart): %s", strings.Join(disabled, ", ")))
	}
	note := strings.Join(notes, "; ")
	if len(out) == 0 {
		if note == "" {
			note = "no running pod"
		}
		return nil, note, fmt.Errorf("tap: no pod of %s in %s can be tapped (%s)", r, r.Namespace, note)
	}
	return out, note, nil
}

func tapEnabled(p *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			if c.Name != metrics.ProxyContainerName {
				continue
			}
			for _, e := range c.Env {
				if e.Name == EnabledEnv {
					return e.Value == "true"
				}
			}
		}
	}
	return false
}

// Authorize asks the API server whether the user may port-forward to pods in
// namespace (which is what tapping them takes), for a clear refusal.
func Authorize(ctx context.Context, kc kubernetes.Interface, namespace string) error {
	rev, err := kc.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{
		Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
			Namespace: namespace, Verb: "create", Resource: "pods", Subresource: "portforward",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("tap: checking your permissions: %w", err)
	}
	if !rev.Status.Allowed {
		why := ""
		if rev.Status.Reason != "" {
			why = " (" + rev.Status.Reason + ")"
		}
		return fmt.Errorf("tap: you may not tap pods in namespace %s: tapping needs 'create pods/portforward' there%s", namespace, why)
	}
	return nil
}

// Stream taps every target concurrently and hands the events to emit, one
// at a time, until ctx ends, every stream ends, or emit fails. It returns the
// first stream error unless ctx ended.
func Stream(ctx context.Context, targets []Target, dial Dialer, req *tapv1.ObserveRequest, emit func(Event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var first error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
		}
		cancel()
	}
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, closeConn, err := dial(ctx, t)
			if err != nil {
				fail(fmt.Errorf("tap: connecting to the proxy of %s/%s: %w", t.Namespace, t.Name, err))
				return
			}
			defer closeConn()
			s, err := tapv1.NewTapClient(conn).Observe(ctx, req)
			if err != nil {
				fail(fmt.Errorf("tap: %s/%s: %w", t.Namespace, t.Name, err))
				return
			}
			for {
				ev, err := s.Recv()
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("tap: %s/%s: %w", t.Namespace, t.Name, err))
					}
					return
				}
				mu.Lock()
				err = emit(Event{Pod: t, Event: ev})
				mu.Unlock()
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil && first == nil {
		return nil
	}
	if errors.Is(first, ErrStop) {
		return nil
	}
	return first
}

// ErrStop, returned by emit, ends a stream without an error (a limit was reached).
var ErrStop = errors.New("tap: stop")

// sortedLabels renders a label map as k=v pairs, sorted.
func sortedLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, "dst_"+k+"="+m[k])
	}
	return strings.Join(parts, " ")
}
