package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"k8s.io/client-go/kubernetes"
)

// ServerConfig configures Run.
type ServerConfig struct {
	Config
	// Addr serves gRPC in plaintext (the pod's proxy terminates TLS); AdminAddr serves /metrics, /ready, /live.
	Addr, AdminAddr string
	// IssuerSecret and TrustAnchorsConfigMap live in Config.ControlPlaneNamespace.
	IssuerSecret, TrustAnchorsConfigMap string
	TokenAudience                       string
	// DrainTimeout bounds the graceful stop of in-flight Certify calls.
	DrainTimeout time.Duration
}

// Run serves the identity service until ctx ends, then drains.
func Run(ctx context.Context, cfg ServerConfig, client kubernetes.Interface, log *slog.Logger) error {
	if cfg.TokenAudience == "" {
		return errors.New("identity: the token audience must be set")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := NewMetrics(reg)
	store := &IssuerStore{}
	svc, err := NewService(cfg.Config, &TokenReviewValidator{Client: client, Audience: cfg.TokenAudience}, store, metrics, log)
	if err != nil {
		return err
	}
	recorder, stopEvents := NewEventRecorder(client, cfg.ControlPlaneNamespace, "conduit-identity")
	defer stopEvents()
	watcher := &Watcher{
		Client: client, Namespace: cfg.ControlPlaneNamespace,
		SecretName: cfg.IssuerSecret, ConfigMapName: cfg.TrustAnchorsConfigMap,
		Store: store, Recorder: recorder, Metrics: metrics, Log: log,
	}

	grpcLis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("identity: listen %s: %w", cfg.Addr, err)
	}
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("identity: listen %s: %w", cfg.AdminAddr, err)
	}
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(64<<10), // a token and a CSR are a few KiB
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
	)
	identityv1.RegisterIdentityServer(gs, svc)
	admin := &http.Server{Handler: AdminHandler(reg, store), ReadHeaderTimeout: 5 * time.Second}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := watcher.Run(ctx); err != nil {
			errc <- err
		}
	}()
	go func() {
		defer wg.Done()
		log.Info("serving gRPC", "addr", grpcLis.Addr().String())
		if err := gs.Serve(grpcLis); err != nil {
			errc <- fmt.Errorf("identity: gRPC server: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		log.Info("serving admin", "addr", adminLis.Addr().String())
		if err := admin.Serve(adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("identity: admin server: %w", err)
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight requests")
	case runErr = <-errc:
		log.Error("stopping", "error", runErr)
	}
	cancel()
	drain := cfg.DrainTimeout
	if drain <= 0 {
		drain = 10 * time.Second
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(drain):
		gs.Stop()
	}
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_ = admin.Shutdown(sctx)
	wg.Wait()
	return runErr
}

// AdminHandler serves /metrics from reg, /live always, and /ready once an
// issuer is loaded.
func AdminHandler(reg *prometheus.Registry, issuers IssuerSource) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("live\n"))
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if issuers.Current() == nil {
			http.Error(w, "not ready: no valid issuer loaded (see the conduit-identity-issuer Secret's events)", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
