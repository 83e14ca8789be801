package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// EventSink records Warning Events about a pod (core/injector.KubeEvents
// implements it).
type EventSink interface {
	Warn(ctx context.Context, pod *corev1.Pod, namespace, reason, message string)
}

// HooksOptions tune Hooks.
type HooksOptions struct {
	Logger *slog.Logger
	// Timeout bounds each hook call (default 1s).
	Timeout time.Duration
	// Backoff is how long a hook that failed is skipped (default 3s), so
	// that a dead extension does not add its timeout to every call.
	Backoff time.Duration
	// Events, if set, records a Warning Event when an injector hook fails.
	Events EventSink
	// Registerer, if set, registers the call metrics.
	Registerer prometheus.Registerer
	// DialOptions for the hooks' gRPC connections (default: plaintext; the
	// mesh's proxies provide mTLS between meshed pods).
	DialOptions []grpc.DialOption
	// HostVersion is reported to the extensions.
	HostVersion string
}

// Hooks calls the injector and destination hooks that extensions serve in
// the cluster. The extensions are the namespaces labelled
// conduit.dev/extension=<name>, with the address of their hooks in the
// annotations conduit.dev/injector-hook and conduit.dev/destination-hook.
// Refresh (or Run) keeps the list current. A failing, slow or absent hook
// never fails its caller: the call is skipped, logged, counted, and (for
// the injector) recorded as an Event.
type Hooks struct {
	cs       kubernetes.Interface
	opts     HooksOptions
	duration *prometheus.HistogramVec

	mu          sync.RWMutex
	targets     map[string]*target // by address
	injector    []*target
	destination []*target
}

// target is one extension's hook server.
type target struct {
	ext, namespace, addr string
	conn                 *grpc.ClientConn
	client               *client.Client

	mu          sync.Mutex
	failedUntil time.Time
}

// NewHooks returns hooks that find extensions with cs. Call Refresh or Run
// before use; with no extension every call is a no-op.
func NewHooks(cs kubernetes.Interface, opts HooksOptions) *Hooks {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	if opts.Backoff == 0 {
		opts.Backoff = 3 * time.Second
	}
	if opts.DialOptions == nil {
		opts.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	h := &Hooks{
		cs:   cs,
		opts: opts,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "conduit_extension_hook_duration_seconds",
			Help:    "Duration of the calls to extensions' hooks, by extension, method and gRPC code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"extension", "method", "code"}),
		targets: map[string]*target{},
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(h.duration); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				h.duration = are.ExistingCollector.(*prometheus.HistogramVec)
			} else {
				opts.Logger.Warn("cannot register hook metrics", "err", err)
			}
		}
	}
	return h
}

// Refresh lists the extensions' namespaces and connects to their hooks.
func (h *Hooks) Refresh(ctx context.Context) error {
	exts, err := ClusterExtensions(ctx, h.cs)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	keep := map[string]*target{}
	get := func(ce ClusterExtension, addr string) *target {
		if t, ok := keep[addr]; ok {
			return t
		}
		t, ok := h.targets[addr]
		if !ok || t.ext != ce.Name {
			// passthrough: the address is dialled as given (a ClusterIP
			// Service name resolves to one address anyway).
			conn, err := grpc.NewClient("passthrough:///"+addr, h.opts.DialOptions...)
			if err != nil {
				h.opts.Logger.Warn("invalid extension hook address", "extension", ce.Name, "namespace", ce.Namespace, "address", addr, "err", err)
				return nil
			}
			t = &target{ext: ce.Name, namespace: ce.Namespace, addr: addr, conn: conn, client: client.New(conn, h.opts.HostVersion)}
			h.opts.Logger.Info("extension hook found", "extension", ce.Name, "namespace", ce.Namespace, "address", addr)
		}
		keep[addr] = t
		return t
	}
	h.injector, h.destination = nil, nil
	for _, ce := range exts {
		if ce.InjectorHook != "" {
			if t := get(ce, ce.InjectorHook); t != nil {
				h.injector = append(h.injector, t)
			}
		}
		if ce.DestinationHook != "" {
			if t := get(ce, ce.DestinationHook); t != nil {
				h.destination = append(h.destination, t)
			}
		}
	}
	for addr, t := range h.targets {
		if keep[addr] != t {
			t.conn.Close()
		}
	}
	h.targets = keep
	return nil
}

// retryUnavailableAfter is the pause before the one retry of a call that
// failed with codes.Unavailable.
const retryUnavailableAfter = 150 * time.Millisecond

// DefaultRefreshInterval is how often StartHooks lists the extensions.
const DefaultRefreshInterval = 30 * time.Second

// StartHooks returns hooks that are refreshed now, then on every change to
// an extension's namespace and every DefaultRefreshInterval until ctx ends. This is the whole wiring of a
// control-plane component (core/cmd/controller), with reg the registry its
// admin server serves:
//
//	hooks := pluginhost.StartHooks(ctx, client, pluginhost.HooksOptions{Logger: log, Events: events, Registerer: reg})
//	opts.Contributors = append(opts.Contributors, pluginhost.InjectorContributor{Hooks: hooks})   // injector
//	cfg.Annotators = append(cfg.Annotators, &pluginhost.EndpointAnnotator{Hooks: hooks})          // destination
func StartHooks(ctx context.Context, cs kubernetes.Interface, opts HooksOptions) *Hooks {
	h := NewHooks(cs, opts)
	if err := h.Refresh(ctx); err != nil {
		h.opts.Logger.Warn("cannot list extensions yet", "err", err)
	}
	go h.Run(ctx, DefaultRefreshInterval)
	return h
}

// Run refreshes every interval, and within a moment of any change to an
// extension's namespace (a watch on the label conduit.dev/extension), until
// ctx ends, then closes the connections. The watch makes an extension's hooks
// apply to the pods created right after its install; the interval is the
// safety net when the watch is down.
func (h *Hooks) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	kick := make(chan struct{}, 1)
	go h.watchNamespaces(ctx, kick)
	// No list up front: the watch kicks once it is open (and StartHooks has
	// just listed).
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			for _, t := range h.targets {
				t.conn.Close()
			}
			h.targets, h.injector, h.destination = map[string]*target{}, nil, nil
			h.mu.Unlock()
			return
		case <-tick.C:
		case <-kick:
		}
		if err := h.Refresh(ctx); err != nil && ctx.Err() == nil {
			h.opts.Logger.Warn("cannot list extensions", "err", err)
		}
	}
}

// watchNamespaces signals kick on every change to a namespace labelled
// conduit.dev/extension, re-opening the watch with backoff until ctx ends.
func (h *Hooks) watchNamespaces(ctx context.Context, kick chan<- struct{}) {
	backoff := time.Second
	for ctx.Err() == nil {
		w, err := h.cs.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{LabelSelector: LabelExtension})
		if err != nil {
			h.opts.Logger.Debug("cannot watch extension namespaces", "err", err, "retry", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		// Anything may have changed while the watch was down.
		select {
		case kick <- struct{}{}:
		default:
		}
		for range w.ResultChan() {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
		w.Stop()
	}
}

func (h *Hooks) snapshot(destination bool) []*target {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if destination {
		return append([]*target(nil), h.destination...)
	}
	return append([]*target(nil), h.injector...)
}

// call runs fn against t with the timeout, unless t is backing off, and
// measures it.
func (h *Hooks) call(ctx context.Context, t *target, method string, fn func(ctx context.Context) error) error {
	t.mu.Lock()
	skip := time.Now().Before(t.failedUntil)
	t.mu.Unlock()
	if skip {
		return fmt.Errorf("pluginhost: hook of extension %q at %s is backing off after a failure", t.ext, t.addr)
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	// Unavailable is mostly transient (a connection being set up, the
	// extension's pod or the mesh's proxy just restarted): try once more
	// within the deadline before giving up and backing off.
	if err != nil && status.Code(unwrapStatus(err)) == codes.Unavailable {
		select {
		case <-ctx.Done():
		case <-time.After(retryUnavailableAfter):
			err = fn(ctx)
		}
	}
	code := "OK"
	if err != nil {
		code = status.Code(unwrapStatus(err)).String()
		if errors.Is(err, client.ErrNotSupported) {
			code = "Unimplemented"
		}
		t.mu.Lock()
		t.failedUntil = time.Now().Add(h.opts.Backoff)
		t.mu.Unlock()
	}
	h.duration.WithLabelValues(t.ext, method, code).Observe(time.Since(start).Seconds())
	return err
}

// unwrapStatus finds the gRPC status in a wrapped error.
func unwrapStatus(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := status.FromError(e); ok {
			return e
		}
	}
	return err
}

// patchOne asks t's injector hook for its patch of req.Pod.
func (h *Hooks) patchOne(ctx context.Context, t *target, req *sdk.PodPatchRequest) ([]byte, error) {
	var patch []byte
	err := h.call(ctx, t, "PatchPod", func(ctx context.Context) error {
		var err error
		patch, err = t.client.PatchPod(ctx, req)
		return err
	})
	return patch, err
}

// reportPatchFailure logs, and records as an Event (except for a dry run),
// that t's patch was left out.
func (h *Hooks) reportPatchFailure(ctx context.Context, t *target, pod *corev1.Pod, namespace string, dryRun bool, err error) {
	h.opts.Logger.Warn("extension injector hook failed; pod admitted without its patch", "extension", t.ext, "address", t.addr, "err", err)
	if h.opts.Events != nil && pod != nil && !dryRun {
		h.opts.Events.Warn(ctx, pod, namespace, "ExtensionHookFailed",
			fmt.Sprintf("extension %s: injector hook at %s failed, the pod is injected without its patch: %v", t.ext, t.addr, err))
	}
}

// AnnotateEndpoint asks every destination hook for the metadata of one
// endpoint (addr is "ip:port", pod may be nil) and merges it, hooks in
// extension-name order (a later extension does not overwrite an earlier
// one's key). Hooks that fail are skipped; failed reports whether any did.
func (h *Hooks) AnnotateEndpoint(ctx context.Context, authority, addr string, pod *corev1.Pod) (md map[string]string, failed bool) {
	targets := h.snapshot(true)
	if len(targets) == 0 {
		return nil, false
	}
	ep := sdk.Endpoint{Address: addr}
	if pod != nil {
		ep.PodName, ep.PodNamespace, ep.PodLabels = pod.Name, pod.Namespace, pod.Labels
	}
	sort.SliceStable(targets, func(i, j int) bool { return targets[i].ext < targets[j].ext })
	for _, t := range targets {
		var resp map[string]map[string]string
		err := h.call(ctx, t, "AnnotateEndpoints", func(ctx context.Context) error {
			var err error
			resp, err = t.client.AnnotateEndpoints(ctx, authority, []sdk.Endpoint{ep})
			return err
		})
		if err != nil {
			h.opts.Logger.Debug("extension destination hook failed", "extension", t.ext, "address", t.addr, "err", err)
			failed = true
			continue
		}
		for k, v := range resp[addr] {
			if md == nil {
				md = map[string]string{}
			}
			if _, dup := md[k]; !dup {
				md[k] = v
			}
		}
	}
	return md, failed
}
