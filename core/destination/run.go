package destination

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// RunConfig adds the listeners to Config.
type RunConfig struct {
	Config
	Addr      string // gRPC, ":8086"
	AdminAddr string // /metrics, /ready, /live, ":9996"
	// DrainTimeout bounds the graceful stop of open streams on shutdown.
	DrainTimeout time.Duration
	// Registry, if set, holds the service's metrics and is served on
	// /metrics, so that the caller can add its own collectors (e.g. the
	// extension hooks'); a new registry by default.
	Registry *prometheus.Registry
}

// HasResource reports whether the API server serves gvr.
func HasResource(d discovery.DiscoveryInterface, gvr schema.GroupVersionResource) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("destination: discover %s: %w", gvr.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true, nil
		}
	}
	return false, nil
}

// Run serves the destination service until ctx ends, then drains.
func Run(ctx context.Context, cfg RunConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		cfg.Logger = log
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.Dynamic != nil {
		var err error
		if cfg.ServiceProfiles, err = HasResource(cfg.Client.Discovery(), v1alpha2.GroupVersionResource); err != nil {
			return err
		}
		if !cfg.ServiceProfiles {
			log.Warn("the ServiceProfile CRD is not installed: profiles are served without routes (install the conduit-crds chart)")
		}
		if cfg.TrafficSplits, err = HasResource(cfg.Client.Discovery(), TrafficSplitGVR); err != nil {
			return err
		}
		log.Info("optional sources", "serviceprofiles", cfg.ServiceProfiles, "trafficsplits", cfg.TrafficSplits)
	}
	if cfg.Recorder == nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Client.CoreV1().Events("")})
		defer b.Shutdown()
		cfg.Recorder = b.NewRecorder(runtime.NewScheme(), corev1.EventSource{Component: "conduit-destination"})
	}
	x, err := NewIndex(cfg.Config)
	if err != nil {
		return err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := NewServer(x, reg)

	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("destination: listen %s: %w", cfg.Addr, err)
	}
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		lis.Close()
		return fmt.Errorf("destination: listen %s: %w", cfg.AdminAddr, err)
	}
	g := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	srv.Register(g)
	admin := &http.Server{Handler: AdminHandler(srv.Ready, reg), ReadHeaderTimeout: 5 * time.Second}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() { errc <- x.Run(runCtx) }()
	go func() { errc <- g.Serve(lis) }()
	go func() {
		if err := admin.Serve(adminLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	log.Info("serving", "addr", lis.Addr().String(), "admin_addr", adminLis.Addr().String(),
		"cluster_domain", cfg.ClusterDomain, "trust_domain", cfg.TrustDomain)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining streams", "timeout", cfg.DrainTimeout.String())
	case runErr = <-errc:
		if runErr != nil {
			runErr = fmt.Errorf("destination: %w", runErr)
			log.Error("stopping", "err", runErr)
		}
	}
	// End every open stream (the proxies reconnect to another replica), then stop.
	srv.Drain()
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.DrainTimeout):
		g.Stop()
	}
	cancel()
	shCtx, shCancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer shCancel()
	_ = admin.Shutdown(shCtx)
	return runErr
}

// AdminHandler serves /metrics, /ready (200 once the caches have synced) and /live.
func AdminHandler(ready func() bool, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/live", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "informer caches not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
