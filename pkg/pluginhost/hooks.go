package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
	pluginv1 "github.com/conduit-mesh/conduit/proto/plugin/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
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
	// Namespace is the control plane's namespace, where the allow-list
	// (ConfigMap conduit-extension-allowlist) lives. Required.
	Namespace string
	// PluginDir is where the extensions' hook binaries are written and run
	// from (an emptyDir in the control plane's pods). Required.
	PluginDir string
	// Timeout bounds each hook call (default 1s).
	Timeout time.Duration
	// Backoff is how long a hook that failed is skipped (default 3s), so
	// that a dead extension does not add its timeout to every call.
	Backoff time.Duration
	// Events, if set, records a Warning Event when an injector hook fails.
	Events EventSink
	// Registerer, if set, registers the call metrics.
	Registerer prometheus.Registerer
	// DialOptions for the connections to the extensions' Distribution
	// services (default: plaintext; the mesh's proxies provide mTLS between
	// meshed pods).
	DialOptions []grpc.DialOption
	// HostVersion is reported to the extensions.
	HostVersion string
	// MaxBinarySize bounds a hook binary (default 256 MiB).
	MaxBinarySize int64
}

// Hooks runs the injector and destination hooks of the extensions installed
// in the cluster, as go-plugin subprocesses of the calling component. An
// extension is a namespace labelled conduit.dev/extension=<name> whose
// annotations conduit.dev/injector-hook and conduit.dev/destination-hook give
// the address where its controller hands out the hook binary (sdk.ServeHooks).
// Hooks runs a binary only when the allow-list names the extension with that
// binary's SHA-256, checked when the binary is fetched and again by go-plugin
// (SecureConfig) right before it runs; the plugin gets an empty environment.
// Refresh (or Run) keeps the set current and restarts a plugin that crashed.
// A failing, slow, crashed or refused hook never fails its caller: the call
// is skipped, logged, counted, and (for the injector) recorded as an Event.
type Hooks struct {
	cs       kubernetes.Interface
	opts     HooksOptions
	duration *prometheus.HistogramVec
	status   *prometheus.GaugeVec
	kick     chan struct{}

	refreshMu sync.Mutex // one Refresh at a time

	mu          sync.RWMutex
	targets     map[string]*target // by extension name
	injector    []*target
	destination []*target
	// failClosed names the extensions whose failure policy is Fail;
	// unavailable those of them whose injector hook is not running (why).
	failClosed  map[string]bool
	unavailable map[string]string
	// reported remembers the last state logged per extension, so that a
	// refused extension is logged when its state changes, not every
	// refresh, and a new digest or failure policy is logged too.
	reported map[string]loggedState
}

// loggedState is what report last logged of an extension.
type loggedState struct {
	pluginState
	msg string
}

// target is one extension's running hook plugin.
type target struct {
	ext, namespace, addr, sha string
	plugin                    *Plugin
	client                    *client.Client

	mu          sync.Mutex
	failedUntil time.Time
}

// pluginState is an extension's state in the conduit_extension_hook_plugin
// gauge, and the allow-list entry it is about: the allowed digest and
// failure policy ("" when not allowed).
type pluginState struct{ state, sha, policy string }

// PluginMetric is the gauge in which the injector and destination report
// the state of each extension's hook plugin (labels extension, state,
// sha256, failure_policy); `mesh extensions allow` and `mesh check` read it.
const PluginMetric = "conduit_extension_hook_plugin"

// Plugin states of the PluginMetric gauge.
const (
	StateRunning    = "running"
	StateNotAllowed = "not-allowed"
	StateRefused    = "refused"
	StateFailed     = "failed"
)

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
	if opts.MaxBinarySize == 0 {
		opts.MaxBinarySize = 256 << 20
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
		status: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: PluginMetric,
			Help: "1 for the state of each extension's hook plugin: running, not-allowed (not in the allow-list), refused (digest mismatch), failed (fetch or start failed); sha256 and failure_policy are the allow-list entry the state is about (empty when not allowed).",
		}, []string{"extension", "state", "sha256", "failure_policy"}),
		kick:     make(chan struct{}, 1),
		targets:  map[string]*target{},
		reported: map[string]loggedState{},
	}
	if opts.Registerer != nil {
		h.duration = register(opts, h.duration)
		h.status = register(opts, h.status)
	}
	return h
}

// register registers c, or returns the collector already registered.
func register[C prometheus.Collector](opts HooksOptions, c C) C {
	if err := opts.Registerer.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		opts.Logger.Warn("cannot register hook metrics", "err", err)
	}
	return c
}

// report logs msg for ext once per change of state (or of the digest or
// failure policy it is about), and records the state in states, which
// Refresh sets the gauge from once the new set is in use.
func (h *Hooks) report(states map[string]pluginState, ext string, st pluginState, msg string, attrs ...any) {
	states[ext] = st
	state := st.state
	if h.reported[ext] == (loggedState{st, msg}) {
		return
	}
	h.reported[ext] = loggedState{st, msg}
	attrs = append([]any{"extension", ext, "state", state}, attrs...)
	if state == StateRunning {
		h.opts.Logger.Info(msg, attrs...)
	} else {
		h.opts.Logger.Warn(msg, attrs...)
	}
}

// Refresh lists the extensions and the allow-list, starts the hook plugins
// of the allowed extensions that are not running (or crashed, or changed),
// and stops those of the extensions that are gone or no longer allowed.
func (h *Hooks) Refresh(ctx context.Context) error {
	h.refreshMu.Lock()
	defer h.refreshMu.Unlock()
	exts, err := ClusterExtensions(ctx, h.cs)
	if err != nil {
		return err
	}
	allow, bad, err := ReadAllowList(ctx, h.cs, h.opts.Namespace)
	if err != nil {
		return err
	}
	for _, e := range bad {
		h.opts.Logger.Warn("invalid allow-list entry ignored", "err", e)
	}
	h.mu.RLock()
	current := maps.Clone(h.targets)
	h.mu.RUnlock()

	next := map[string]*target{}
	var injectorTargets, destinationTargets []*target
	seen := map[string]bool{}
	retry := false
	failClosed, unavailable := map[string]bool{}, map[string]string{}
	states := map[string]pluginState{} // by extension, for the gauge
	for _, ce := range exts {
		addr := ce.InjectorHook
		if addr == "" {
			addr = ce.DestinationHook
		}
		if addr == "" || seen[ce.Name] {
			continue
		}
		seen[ce.Name] = true
		entry, ok := allow[ce.Name]
		sha, policy := entry.SHA256, string(entry.FailurePolicy)
		if ok && entry.FailurePolicy == Fail {
			failClosed[ce.Name] = true
		}
		if !ok {
			h.report(states, ce.Name, pluginState{StateNotAllowed, "", ""}, "extension hooks not run: the extension is not in the allow-list",
				"namespace", ce.Namespace, "hint", "mesh extensions allow "+ce.Name)
			continue
		}
		t := current[ce.Name]
		if t == nil || t.sha != sha || t.addr != addr || t.plugin.Exited() {
			t, err = h.start(ctx, ce, addr, sha)
			if err != nil {
				state := StateFailed
				if errors.Is(err, errDigest) {
					state = StateRefused
				} else {
					// Mostly the extension's pod not serving yet: try
					// again soon rather than at the next interval.
					retry = true
				}
				h.report(states, ce.Name, pluginState{state, sha, policy}, "extension hooks not run", "namespace", ce.Namespace, "address", addr, "err", err)
				if failClosed[ce.Name] && ce.InjectorHook != "" {
					unavailable[ce.Name] = err.Error()
				}
				continue
			}
		}
		h.report(states, ce.Name, pluginState{StateRunning, sha, policy}, "extension hook plugin running", "namespace", ce.Namespace, "address", addr, "sha256", sha, "failure_policy", policy, "version", t.plugin.Info.Version)
		next[ce.Name] = t
		caps := t.plugin.Info.Capabilities
		if ce.InjectorHook != "" && slices.Contains(caps, client.InjectorHook) {
			injectorTargets = append(injectorTargets, t)
		} else if failClosed[ce.Name] && ce.InjectorHook != "" {
			unavailable[ce.Name] = "its plugin does not implement the injector hook"
		}
		if ce.DestinationHook != "" && slices.Contains(caps, client.DestinationHook) {
			destinationTargets = append(destinationTargets, t)
		}
	}
	h.mu.Lock()
	h.targets, h.injector, h.destination = next, injectorTargets, destinationTargets
	h.failClosed, h.unavailable = failClosed, unavailable
	h.mu.Unlock()
	// The gauge changes only now that calls see the new set: `mesh
	// extensions allow` waits for "running", and a pod created right after
	// it must get the hook's patch.
	for ext, st := range states {
		h.status.DeletePartialMatch(prometheus.Labels{"extension": ext}) // another entry's
		for _, state := range []string{StateRunning, StateNotAllowed, StateRefused, StateFailed} {
			v := 0.0
			if state == st.state {
				v = 1
			}
			h.status.WithLabelValues(ext, state, st.sha, st.policy).Set(v)
		}
	}
	if retry {
		time.AfterFunc(retryStartAfter, h.poke)
	}
	for name, t := range current {
		if next[name] != t {
			t.plugin.Close()
			h.opts.Logger.Info("extension hook plugin stopped", "extension", name)
		}
	}
	for name := range h.reported {
		if !seen[name] {
			delete(h.reported, name)
			h.status.DeletePartialMatch(prometheus.Labels{"extension": name})
		}
	}
	return nil
}

// errDigest marks a binary whose SHA-256 is not the allowed one.
var errDigest = errors.New("digest mismatch")

// start fetches ce's hook binary from addr, checks it against sha, and runs it.
func (h *Hooks) start(ctx context.Context, ce ClusterExtension, addr, sha string) (*target, error) {
	if h.opts.PluginDir == "" {
		return nil, errors.New("pluginhost: no plugin directory configured")
	}
	path, err := h.fetch(ctx, ce.Name, addr, sha)
	if err != nil {
		return nil, err
	}
	p, err := Launch(ctx, path, LaunchOptions{
		Logger:      h.opts.Logger,
		HostVersion: h.opts.HostVersion,
		SHA256:      sha,
		Env:         []string{"HOME=" + filepath.Dir(path), "TMPDIR=" + filepath.Dir(path)},
	})
	if err != nil {
		return nil, err
	}
	return &target{ext: ce.Name, namespace: ce.Namespace, addr: addr, sha: sha, plugin: p, client: p.Client}, nil
}

// fetch downloads ce's binary into PluginDir/<sha[:16]>/mesh-<name>, unless
// it is already there, checking size and digest. (The directory is also the
// plugin's TMPDIR, where go-plugin puts its Unix socket: its path must stay
// short.)
func (h *Hooks) fetch(ctx context.Context, name, addr, sha string) (string, error) {
	dir := filepath.Join(h.opts.PluginDir, sha[:16])
	path := filepath.Join(dir, BinaryPrefix+name)
	if _, err := os.Stat(path); err == nil {
		return path, nil // go-plugin checks its digest again before running it
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, h.opts.DialOptions...)
	if err != nil {
		return "", fmt.Errorf("pluginhost: extension %s: invalid hook address %q: %w", name, addr, err)
	}
	defer conn.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("pluginhost: extension %s: %w", name, err)
	}
	f, err := os.CreateTemp(dir, ".fetch-*")
	if err != nil {
		return "", fmt.Errorf("pluginhost: extension %s: %w", name, err)
	}
	defer os.Remove(f.Name())
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// The announced digest is checked before the download, the received
	// one after it.
	allowed := func(announced string) error {
		if announced != sha {
			return fmt.Errorf("%w: %s hands out a binary with SHA-256 %s, the allow-list (ConfigMap %s) names %s; "+
				"if the extension was upgraded and you trust it, run `mesh extensions allow %s` again", errDigest, addr, announced, AllowListName, sha, name)
		}
		return nil
	}
	_, _, err = receiveBinary(ctx, conn, &pluginv1.BinaryRequest{Os: runtime.GOOS, Arch: runtime.GOARCH}, f, h.opts.MaxBinarySize, allowed)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write the hook binary: %w", cerr)
	}
	if err != nil {
		return "", fmt.Errorf("pluginhost: extension %s: from %s: %w", name, addr, err)
	}
	if err := os.Chmod(f.Name(), 0o500); err != nil {
		return "", fmt.Errorf("pluginhost: extension %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("pluginhost: extension %s: %w", name, err)
	}
	return path, nil
}

// startRefreshTimeout bounds StartHooks' first refresh.
const startRefreshTimeout = 5 * time.Second

// retryStartAfter is when Run refreshes again after a plugin could not be
// fetched or started.
const retryStartAfter = 5 * time.Second

// retryUnavailableAfter is the pause before the one retry of a call that
// failed with codes.Unavailable.
const retryUnavailableAfter = 150 * time.Millisecond

// DefaultRefreshInterval is how often StartHooks lists the extensions.
const DefaultRefreshInterval = 30 * time.Second

// StartHooks returns hooks that are refreshed now, then on every change to
// an extension's namespace or to the allow-list, when a plugin crashes, and
// every DefaultRefreshInterval until ctx ends. This is the whole wiring of a
// control-plane component (core/cmd/controller), with reg the registry its
// admin server serves:
//
//	hooks := pluginhost.StartHooks(ctx, client, pluginhost.HooksOptions{Logger: log, Namespace: ns, PluginDir: dir, Events: events, Registerer: reg})
//	opts.Contributors = append(opts.Contributors, pluginhost.InjectorContributor{Hooks: hooks})   // injector
//	cfg.Annotators = append(cfg.Annotators, &pluginhost.EndpointAnnotator{Hooks: hooks})          // destination
//
// The first refresh, which fetches and starts the plugins, is bounded by
// startRefreshTimeout: an unreachable extension must not hold up the
// component's start (a plugin not started by then is retried in the
// background).
func StartHooks(ctx context.Context, cs kubernetes.Interface, opts HooksOptions) *Hooks {
	h := NewHooks(cs, opts)
	rctx, cancel := context.WithTimeout(ctx, startRefreshTimeout)
	defer cancel()
	if err := h.Refresh(rctx); err != nil {
		h.opts.Logger.Warn("cannot list extensions yet", "err", err)
	}
	go h.Run(ctx, DefaultRefreshInterval)
	return h
}

// Run refreshes every interval, and within a moment of any change to an
// extension's namespace (a watch on the label conduit.dev/extension) or to
// the allow-list, or of a plugin's crash, until ctx ends; then it stops the
// plugins. The watches make an extension's hooks apply to the pods created
// right after it is allowed; the interval is the safety net when they are down.
func (h *Hooks) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	go h.watch(ctx, func(ctx context.Context) (watch.Interface, error) {
		return h.cs.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{LabelSelector: LabelExtension})
	})
	go h.watch(ctx, func(ctx context.Context) (watch.Interface, error) {
		return h.cs.CoreV1().ConfigMaps(h.opts.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + AllowListName})
	})
	// No list up front: the watches kick once they are open (and StartHooks
	// has just listed).
	for {
		select {
		case <-ctx.Done():
			h.Close()
			return
		case <-tick.C:
		case <-h.kick:
		}
		if err := h.Refresh(ctx); err != nil && ctx.Err() == nil {
			h.opts.Logger.Warn("cannot list extensions", "err", err)
		}
	}
}

// Close stops every plugin.
func (h *Hooks) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.targets {
		t.plugin.Close()
	}
	h.targets, h.injector, h.destination = map[string]*target{}, nil, nil
}

// poke asks Run for a refresh.
func (h *Hooks) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// watch pokes Run on every event of the watch open opens, re-opening it
// with backoff until ctx ends.
func (h *Hooks) watch(ctx context.Context, open func(context.Context) (watch.Interface, error)) {
	backoff := time.Second
	for ctx.Err() == nil {
		w, err := open(ctx)
		if err != nil {
			h.opts.Logger.Debug("cannot watch", "err", err, "retry", backoff)
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
		h.poke()
		for range w.ResultChan() {
			h.poke()
		}
		w.Stop()
	}
}

// policies returns the extensions whose failure policy is Fail, and those
// of them whose injector hook is not running, with why.
func (h *Hooks) policies() (failClosed map[string]bool, unavailable map[string]string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.failClosed, h.unavailable
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
		return fmt.Errorf("pluginhost: hook of extension %q is backing off after a failure", t.ext)
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
		if t.plugin.Exited() {
			err = fmt.Errorf("pluginhost: the hook plugin of extension %q exited (it is restarted): %w", t.ext, err)
			h.poke()
		}
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
	h.opts.Logger.Warn("extension injector hook failed; pod admitted without its patch", "extension", t.ext, "err", err)
	if h.opts.Events != nil && pod != nil && !dryRun {
		h.opts.Events.Warn(ctx, pod, namespace, "ExtensionHookFailed",
			fmt.Sprintf("extension %s: injector hook failed, the pod is injected without its patch: %v", t.ext, err))
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
			h.opts.Logger.Debug("extension destination hook failed", "extension", t.ext, "err", err)
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
