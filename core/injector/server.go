package injector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// SidecarMode chooses how the proxy is added.
type SidecarMode string

// Sidecar modes: auto picks native on Kubernetes 1.29 and later.
const (
	SidecarAuto    SidecarMode = "auto"
	SidecarNative  SidecarMode = "native"
	SidecarRegular SidecarMode = "regular"
)

// Options configure Run.
type Options struct {
	Namespace   string // control-plane namespace
	Addr        string // webhook, :8443
	AdminAddr   string // admin, :9995
	SidecarMode SidecarMode
	// CertCheckInterval is how often the certificate and caBundle are
	// checked (besides Secret events).
	CertCheckInterval time.Duration
	Contributors      []PatchContributor
	// WebhookConfig names the MutatingWebhookConfiguration whose caBundle
	// is kept in sync (default conduit-proxy-injector).
	WebhookConfig string
	// Registry, if set, holds the injector's metrics and is served on
	// /metrics, so that the caller can register its own collectors on it
	// (e.g. the extension hooks'); a new registry by default.
	Registry *prometheus.Registry
	// Terminating, if set, is closed when the replica starts to terminate,
	// before ctx ends (the shutdown delay lies between): from then on the
	// webhook still answers, but closes each connection after its answer
	// (HTTP/2: GOAWAY), so that the API server reconnects, through the
	// Service, to a replica that stays. See DefaultShutdownDelay.
	Terminating <-chan struct{}
}

// Run serves the webhook until ctx is cancelled, then drains.
func Run(ctx context.Context, client kubernetes.Interface, opts Options, log *slog.Logger) error {
	native, err := chooseNative(client, opts.SidecarMode)
	if err != nil {
		return err
	}
	log.Info("starting", "namespace", opts.Namespace, "nativeSidecar", native)

	store := NewConfigStore(opts.Namespace, log)
	// ConfigMaps and Secrets of the control-plane namespace; namespaces cluster-wide.
	cpFactory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithNamespace(opts.Namespace))
	nsFactory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	cmInformer := cpFactory.Core().V1().ConfigMaps().Informer()
	onCM := func(obj any, deleted bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			store.Update(cm, deleted)
		}
	}
	if _, err := cmInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { onCM(o, false) },
		UpdateFunc: func(_, o any) { onCM(o, false) },
		DeleteFunc: func(o any) { onCM(o, true) },
	}); err != nil {
		return fmt.Errorf("injector: watch ConfigMaps: %w", err)
	}
	nsLister := nsFactory.Core().V1().Namespaces().Lister()
	nsInformer := nsFactory.Core().V1().Namespaces().Informer()

	certs := &CertManager{Client: client, Namespace: opts.Namespace, Log: log, WebhookConfig: opts.WebhookConfig}
	secretFactory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", TLSSecretName).String()
		}))
	recheck := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case recheck <- struct{}{}:
		default:
		}
	}
	if _, err := secretFactory.Core().V1().Secrets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
	}); err != nil {
		return fmt.Errorf("injector: watch Secret: %w", err)
	}

	// The MutatingWebhookConfiguration, by name: re-created (a fresh
	// install) or edited without our caBundle, it is repaired at once rather
	// than at the next periodic check.
	webhookFactory, err := certs.watchWebhookConfig(poke)
	if err != nil {
		return err
	}

	cpFactory.Start(ctx.Done())
	nsFactory.Start(ctx.Done())
	secretFactory.Start(ctx.Done())
	webhookFactory.Start(ctx.Done())
	defer func() {
		cpFactory.Shutdown()
		nsFactory.Shutdown()
		secretFactory.Shutdown()
		webhookFactory.Shutdown()
	}()

	var synced atomic.Bool
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), cmInformer.HasSynced, nsInformer.HasSynced) {
			synced.Store(true)
			if ok, err := store.Loaded(); !ok {
				log.Warn("no valid ConfigMap "+ConfigMapName+"; using the defaults", "err", err)
			}
		}
	}()

	// Certificate: first reconcile before serving, then periodically.
	for {
		if err := certs.Reconcile(ctx); err != nil {
			log.Error("webhook certificate", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
				continue
			}
		}
		break
	}
	interval := opts.CertCheckInterval
	if interval <= 0 {
		interval = 10 * time.Minute
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-recheck:
			}
			if err := certs.Reconcile(ctx); err != nil {
				log.Error("webhook certificate", "err", err)
				// Retry soon rather than at the next interval: the
				// event that asked for this check will not come again.
				time.AfterFunc(5*time.Second, func() { poke(nil) })
			}
		}
	}()

	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	wh := &Webhook{
		Injector: &Injector{ControlPlaneNamespace: opts.Namespace, Config: store.Get, NativeSidecar: native, Contributors: opts.Contributors},
		Namespaces: func(name string) (map[string]string, map[string]string, error) {
			ns, err := nsLister.Get(name)
			if apierrors.IsNotFound(err) {
				// A namespace created a moment ago may not be in the cache
				// yet: ask the API server rather than miss its annotation.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				ns, err = client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return nil, nil, nil
				}
			}
			if err != nil {
				return nil, nil, err
			}
			return ns.Labels, ns.Annotations, nil
		},
		Events:  &KubeEvents{Client: client, Log: log, Component: "conduit-injector"},
		Log:     log,
		Metrics: NewMetrics(reg),
	}
	mux := http.NewServeMux()
	mux.Handle(WebhookPath, wh)
	srv := &http.Server{
		Addr:              opts.Addr,
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	admin := http.NewServeMux()
	admin.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	admin.HandleFunc("/live", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	admin.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !synced.Load() || !certs.Ready() {
			http.Error(w, "not ready: caches syncing or no certificate", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	adminSrv := &http.Server{Addr: opts.AdminAddr, Handler: admin, ReadHeaderTimeout: 10 * time.Second}

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("injector: listen %s: %w", opts.Addr, err)
	}
	adminLn, err := net.Listen("tcp", opts.AdminAddr)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("injector: listen %s: %w", opts.AdminAddr, err)
	}
	if opts.Terminating != nil {
		go func() {
			select {
			case <-opts.Terminating:
				log.Info("terminating: closing the webhook's connections after their answers")
				srv.SetKeepAlivesEnabled(false)
			case <-ctx.Done():
			}
		}()
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	log.Info("serving", "webhook", ln.Addr().String(), "admin", adminLn.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("injector: serve: %w", err)
		}
	}
	log.Info("draining")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return errors.Join(srv.Shutdown(shutdownCtx), adminSrv.Shutdown(shutdownCtx))
}

// chooseNative resolves the sidecar mode from the API server's version.
func chooseNative(client kubernetes.Interface, mode SidecarMode) (bool, error) {
	switch mode {
	case SidecarNative:
		return true, nil
	case SidecarRegular:
		return false, nil
	case SidecarAuto, "":
	default:
		return false, fmt.Errorf("injector: unknown sidecar mode %q (accepted: auto, native, regular)", mode)
	}
	v, err := client.Discovery().ServerVersion()
	if err != nil {
		return false, fmt.Errorf("injector: discover the Kubernetes version: %w", err)
	}
	return SupportsNativeSidecars(v.Major, v.Minor), nil
}

// SupportsNativeSidecars reports whether Kubernetes major.minor (as the
// version endpoint spells them, e.g. "1", "29+") runs init containers with
// restartPolicy Always as sidecars: 1.29 and later.
func SupportsNativeSidecars(major, minor string) bool {
	maj, err1 := strconv.Atoi(strings.TrimRight(major, "+"))
	mn, err2 := strconv.Atoi(strings.TrimRight(minor, "+"))
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > 1 || (maj == 1 && mn >= 29)
}
