package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/conduit-mesh/conduit/proxy/admin"
	"github.com/conduit-mesh/conduit/proxy/config"
	"github.com/conduit-mesh/conduit/proxy/discovery"
	"github.com/conduit-mesh/conduit/proxy/identity"
	"github.com/conduit-mesh/conduit/proxy/inbound"
	"github.com/conduit-mesh/conduit/proxy/internal/appsockets"
	"github.com/conduit-mesh/conduit/proxy/metrics"
	"github.com/conduit-mesh/conduit/proxy/origdst"
	"github.com/conduit-mesh/conduit/proxy/outbound"
	"github.com/conduit-mesh/conduit/proxy/tap"
	"github.com/conduit-mesh/conduit/proxy/tlsconf"
)

// Overrides replace kernel facilities in tests, and give the proxy what its
// main owns (the logger's level).
type Overrides struct {
	InboundOrigDst  origdst.Resolver
	OutboundOrigDst origdst.Resolver
	// AppSockets replaces the look at /proc/net for the sockets the
	// application holds (CONDUIT_PROXY_WAIT_FOR_APP_EXIT).
	AppSockets func() ([]appsockets.Socket, error)
	// LogLevel, when set, is the level of the logger given to Start: the
	// admin's /proxy-log-level reads and changes it.
	LogLevel *slog.LevelVar
	// AccessLog is where the access log goes (CONDUIT_PROXY_ACCESS_LOG;
	// default os.Stderr).
	AccessLog io.Writer
	// IPv6Probe replaces the look at whether the host has IPv6 (nil error:
	// it has).
	IPv6Probe func() error
}

// Proxy is a running proxy.
type Proxy struct {
	cfg      *config.Config
	log      *slog.Logger
	Identity *identity.Manager
	Metrics  *metrics.Registry

	inL, outL, adminL net.Listener
	in                *inbound.Proxy
	out               *outbound.Proxy
	admin             *http.Server
	tap               *tap.Hub // nil when tap is disabled
	tapL              net.Listener
	tapSrv            *grpc.Server
	cc                *grpc.ClientConn
	cancel            context.CancelFunc
	shutdown          chan struct{}
	shutdownOnce      sync.Once
	appSockets        func() ([]appsockets.Socket, error)
	access            *tap.AccessLog
	errs              chan error
}

// InboundAddr, OutboundAddr and AdminAddr are the bound addresses (those
// configured; an IPv6 twin listens at the same port).
func (p *Proxy) InboundAddr() net.Addr  { return p.inL.Addr() }
func (p *Proxy) OutboundAddr() net.Addr { return p.outL.Addr() }
func (p *Proxy) AdminAddr() net.Addr    { return p.adminL.Addr() }

// TapAddr is the tap listener's address, nil when tap is disabled.
func (p *Proxy) TapAddr() net.Addr {
	if p.tapL == nil {
		return nil
	}
	return p.tapL.Addr()
}

// Start binds the listeners and starts serving; background work stops when
// ctx ends, but serving continues until Wait drains.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger, ov Overrides) (*Proxy, error) {
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &Proxy{cfg: cfg, log: log, Metrics: metrics.New(), cancel: cancel, shutdown: make(chan struct{}), errs: make(chan error, 4)}
	p.appSockets = ov.AppSockets
	if p.appSockets == nil {
		uid := uint32(os.Geteuid())
		p.appSockets = func() ([]appsockets.Socket, error) { return appsockets.Held("/proc", uid) }
	}
	ok := false
	defer func() {
		if !ok {
			p.closeAll()
		}
	}()

	var err error
	p.Identity, err = identity.New(identity.Options{
		Addr: cfg.IdentityAddr, ServerName: cfg.IdentityServerName, Name: cfg.IdentityName,
		TokenFile: cfg.IdentityTokenFile, Anchors: cfg.TrustAnchors, Logger: log.With("sub", "identity"),
	})
	if err != nil {
		return nil, err
	}

	var creds credentials.TransportCredentials
	if cfg.DestinationName == "" {
		creds = insecure.NewCredentials()
	} else {
		creds = credentials.NewTLS(tlsconf.Client(p.Identity, cfg.TrustAnchors, cfg.DestinationName, tlsconf.ALPNH2, nil))
	}
	p.cc, err = grpc.NewClient(cfg.DestinationAddr, grpc.WithTransportCredentials(creds), grpc.WithConnectParams(identity.ConnectParams),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("proxy: destination client: %w", err)
	}
	disco := discovery.New(bg, p.cc, discovery.Options{ContextToken: cfg.DestinationContext, Logger: log.With("sub", "discovery"),
		IdleTimeout: cfg.DiscoveryIdleTimeout, LastKnownMaxAge: cfg.DiscoveryLastKnownMaxAge})

	inOrig, outOrig := ov.InboundOrigDst, ov.OutboundOrigDst
	if outOrig == nil {
		outOrig = origdst.Kernel{}
		if cfg.OutboundOrigDstOverride != "" {
			ap, err := netip.ParseAddrPort(cfg.OutboundOrigDstOverride)
			if err != nil {
				return nil, fmt.Errorf("proxy: CONDUIT_PROXY_OUTBOUND_ORIG_DST_OVERRIDE must be ip:port: %w", err)
			}
			outOrig = origdst.Static(ap)
		}
	}
	var target netip.AddrPort
	if cfg.InboundTargetOverride != "" {
		if target, err = netip.ParseAddrPort(cfg.InboundTargetOverride); err != nil {
			return nil, fmt.Errorf("proxy: CONDUIT_PROXY_INBOUND_TARGET_OVERRIDE must be ip:port: %w", err)
		}
	}
	if inOrig == nil {
		inOrig = origdst.Kernel{}
	}

	if cfg.TapEnabled || cfg.AccessLog != "" {
		p.tap = tap.NewHub(tap.Options{Log: log.With("sub", "tap")})
	}
	if cfg.AccessLog != "" {
		w := ov.AccessLog
		if w == nil {
			w = os.Stderr
		}
		// Its own handler: the access log does not follow the log level.
		p.access = p.tap.StartAccessLog(slog.New(slog.NewJSONHandler(w, nil)).With("component", "proxy", "log", "access"))
	}
	p.out = outbound.New(outbound.Options{
		Log: log.With("sub", "outbound"), Metrics: p.Metrics, OrigDst: outOrig, Discovery: disco,
		Certs: p.Identity, Anchors: cfg.TrustAnchors, Namespace: cfg.PodNamespace, ClusterDomain: cfg.ClusterDomain,
		DetectTimeout: cfg.DetectTimeout, ConnectTimeout: cfg.ConnectTimeout, DiscoveryTimeout: cfg.DiscoveryTimeout,
		Tap: p.tap, NoFastPath: !cfg.HTTP1FastPath, MeshedHTTP1: cfg.MeshedHTTP1, NoH2FastPath: !cfg.HTTP2FastPath,
		ClusterNetworks: cfg.ClusterNetworks,
	})
	p.admin = admin.NewServer(admin.Handler(admin.Options{
		Pprof:      cfg.DebugPprof,
		Metrics:    p.Metrics,
		Ready:      p.Identity.IsReady,
		CertExpiry: p.Identity.Expiry,
		Shutdown:   p.Shutdown,
		Discovery:  disco.Status,

		CertificatePEM: p.Identity.CertificateChainPEM,
		LogLevel:       ov.LogLevel,
		Log:            log.With("sub", "admin"),
	}))

	// Each listener on a wildcard or loopback address gets its twin in the
	// other family (see listen.go), when the host has IPv6.
	twins := cfg.IPv6 != config.IPv6Off
	if twins {
		probe := ov.IPv6Probe
		if probe == nil {
			probe = probeIPv6
		}
		if err := probe(); err != nil {
			if cfg.IPv6 == config.IPv6On {
				return nil, fmt.Errorf("proxy: CONDUIT_PROXY_IPV6=on but the host has no usable IPv6: %w", err)
			}
			log.Info("no IPv6 on this host: listening on IPv4 only", "err", err.Error())
			twins = false
		}
	}
	if p.inL, err = listen("inbound", cfg.InboundAddr, twins); err != nil {
		return nil, err
	}
	if p.outL, err = listen("outbound", cfg.OutboundAddr, twins); err != nil {
		return nil, err
	}
	if p.adminL, err = listen("admin", cfg.AdminAddr, twins); err != nil {
		return nil, err
	}
	if cfg.TapEnabled {
		// Plaintext on loopback (config enforces it): access is decided by
		// Kubernetes RBAC on port-forward.
		if p.tapL, err = net.Listen("tcp", cfg.TapAddr); err != nil {
			return nil, fmt.Errorf("proxy: tap listener: %w", err)
		}
		p.tapSrv = grpc.NewServer()
		tap.NewServer(p.tap).Register(p.tapSrv)
	}
	p.in = inbound.New(inbound.Options{
		Log: log.With("sub", "inbound"), Metrics: p.Metrics, OrigDst: inOrig, Identity: p.Identity,
		TLS: tlsconf.Server(p.Identity, cfg.TrustAnchors), OpaquePort: cfg.InboundOpaquePorts, Target: target,
		DetectTimeout: cfg.DetectTimeout, ConnectTimeout: cfg.ConnectTimeout, Tap: p.tap,
		NoFastPath: !cfg.HTTP1FastPath, NoH2FastPath: !cfg.HTTP2FastPath,
		OwnPorts: listenPorts(p.inL, p.outL, p.adminL, p.tapL),
		IPv6:     twins, // an application refusing 127.0.0.1 is tried at [::1]
	})
	ok = true
	go func() {
		if err := p.Identity.Run(bg); err != nil {
			log.Error("identity stopped", "err", err)
		}
	}()
	go func() { p.errs <- p.in.Serve(p.inL) }()
	go func() { p.errs <- p.out.Serve(p.outL) }()
	go func() {
		if err := p.admin.Serve(p.adminL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.errs <- fmt.Errorf("proxy: admin: %w", err)
		}
	}()
	if p.tapSrv != nil {
		go func() {
			if err := p.tapSrv.Serve(p.tapL); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				p.errs <- fmt.Errorf("proxy: tap: %w", err)
			}
		}()
		log.Info("tap enabled", "addr", p.tapL.Addr().String())
	}
	log.Info("proxy started", "inbound", listenAddrs(p.inL), "outbound", listenAddrs(p.outL),
		"admin", listenAddrs(p.adminL), "identity", cfg.IdentityName)
	return p, nil
}

// Shutdown asks the proxy to drain (like SIGTERM).
func (p *Proxy) Shutdown() { p.shutdownOnce.Do(func() { close(p.shutdown) }) }

func (p *Proxy) closeAll() {
	for _, l := range []net.Listener{p.inL, p.outL, p.adminL, p.tapL} {
		if l != nil {
			_ = l.Close()
		}
	}
	if p.cc != nil {
		_ = p.cc.Close()
	}
	if p.access != nil {
		// After the drain: the lines of the last requests are written.
		p.access.Close()
	}
	p.cancel()
}

// Wait serves until ctx ends or Shutdown is called, then stops accepting,
// drains in-flight work within the grace period and returns. When ctx ends
// (SIGTERM) and WaitForAppExit is set, it first keeps serving while the
// application holds sockets, for at most that long.
func (p *Proxy) Wait(ctx context.Context) error {
	var serveErr error
	select {
	case <-ctx.Done():
		serveErr = p.awaitApp()
	case <-p.shutdown:
	case err := <-p.errs:
		serveErr = listenerStopped(err)
	}
	p.log.Info("draining", "grace", p.cfg.ShutdownGrace)
	_ = p.inL.Close()
	_ = p.outL.Close()
	p.stopTap()
	drain, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	var inErr, outErr error
	wg.Add(2)
	go func() { defer wg.Done(); inErr = p.in.Shutdown(drain) }()
	go func() { defer wg.Done(); outErr = p.out.Shutdown(drain) }()
	wg.Wait()
	_ = p.admin.Close()
	p.closeAll()
	if serveErr != nil {
		return serveErr
	}
	if err := errors.Join(inErr, outErr); err != nil {
		return fmt.Errorf("proxy: drain incomplete after %s: %w", p.cfg.ShutdownGrace, err)
	}
	p.log.Info("drained")
	return nil
}

// appPoll is how often awaitApp looks at the application's sockets.
const appPoll = 100 * time.Millisecond

// awaitApp serves on while the application holds sockets, for at most
// WaitForAppExit: with the proxy as a regular container, the kubelet sends
// SIGTERM to the proxy and the application at once, and an application that
// still serves or calls out while it stops needs the proxy until it exits.
// Shutdown (POST /shutdown) ends the wait; so does a listener's failure,
// whose error it returns.
func (p *Proxy) awaitApp() error {
	limit := p.cfg.WaitForAppExit
	if limit <= 0 {
		return nil
	}
	start := time.Now()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(appPoll)
	defer tick.Stop()
	for polls := 0; ; polls++ {
		held, err := p.appSockets()
		switch {
		case err != nil:
			p.log.Warn("cannot tell whether the application still runs: draining now", "err", err)
			return nil
		case len(held) == 0 && polls > 0:
			p.log.Info("the application has exited", "after", time.Since(start).Round(time.Millisecond).String())
			return nil
		case len(held) == 0:
			return nil // exited already (a native sidecar is stopped after it)
		case polls == 0:
			p.log.Info("serving until the application exits", "max", limit.String(), "sockets", len(held), "first", held[0].String())
		}
		select {
		case <-p.shutdown:
			return nil
		case err := <-p.errs:
			return listenerStopped(err)
		case <-deadline.C:
			p.log.Warn("the application still holds sockets: draining now", "after", limit.String(), "sockets", len(held), "first", held[0].String())
			return nil
		case <-tick.C:
		}
	}
}

// listenerStopped is the error of a listener's Serve that returned: nil
// means it stopped without one.
func listenerStopped(err error) error {
	if err == nil {
		return errors.New("proxy: a listener stopped")
	}
	return err
}

// stopTap ends the tap streams and stops the tap server.
func (p *Proxy) stopTap() {
	if p.tapSrv == nil {
		return
	}
	p.tap.Close()
	done := make(chan struct{})
	go func() { p.tapSrv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		p.tapSrv.Stop()
	}
}

// listenPorts are the TCP ports of the listeners (nil ones skipped).
func listenPorts(ls ...net.Listener) []uint16 {
	var out []uint16
	for _, l := range ls {
		if l == nil {
			continue
		}
		if a, ok := l.Addr().(*net.TCPAddr); ok {
			out = append(out, uint16(a.Port))
		}
	}
	return out
}
