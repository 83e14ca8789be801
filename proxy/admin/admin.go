package admin

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/pkg/logging"
)

// Options configure the admin handler.
type Options struct {
	// Metrics renders the exposition.
	Metrics io.WriterTo
	// Ready reports readiness.
	Ready func() bool
	// Shutdown starts a graceful shutdown.
	Shutdown func()
	// Pprof serves /debug/pprof/ to loopback clients (for profiling benchmarks).
	Pprof bool
	// CertificatePEM returns the current leaf certificate chain as PEM, nil
	// before the first certificate (GET /identity/certificate).
	CertificatePEM func() []byte
	// CertExpiry returns when the current certificate expires, the zero
	// time before the first one. Nil: the proxy has no identity. It gives
	// identity_cert_expiration_timestamp_seconds, and /ready's warning
	// once the certificate has expired.
	CertExpiry func() time.Time
	// Discovery reports the state of the proxy's discovery client for
	// discovery_unreachable and discovery_stale. Nil: neither is written.
	Discovery func() (unreachable bool, staleEndpoints, staleProfiles int)
	// LogLevel is the level of the proxy's logger: GET /proxy-log-level
	// prints it, PUT (from loopback) changes it. Nil: neither is served.
	LogLevel *slog.LevelVar
	// Log records a change of level.
	Log *slog.Logger
}

// Timeouts of the admin server. The admin port listens on every address of
// the pod: a client that connects and then sends nothing, or trickles a body,
// must not hold a connection (and a file descriptor the proxy's listeners
// share) for ever. No write timeout: /debug/pprof/profile streams for as long
// as asked.
var (
	readHeaderTimeout = 10 * time.Second
	bodyReadTimeout   = 10 * time.Second
	idleTimeout       = 90 * time.Second
)

// NewServer returns the admin HTTP server for h (Handler's mux), with the
// timeouts above.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
}

// Handler returns the admin mux.
func Handler(o Options) http.Handler {
	start := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = o.Metrics.WriteTo(w)
		writeProcess(w, start)
		writeIdentity(w, o.CertExpiry)
		writeDiscovery(w, o.Discovery)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if o.Ready != nil && !o.Ready() {
			http.Error(w, "not ready: no certificate yet", http.StatusServiceUnavailable)
			return
		}
		// An expired certificate that could not be renewed leaves the
		// proxy ready (see docs/proxy.md, Identity): meshed clients' proxies
		// already avoid an endpoint whose handshake fails, while unready
		// pods would leave a Service with no endpoints at all when the
		// identity service is down for the whole cluster.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ready\n")
		if o.CertExpiry != nil {
			if exp := o.CertExpiry(); !exp.IsZero() && !time.Now().Before(exp) {
				fmt.Fprintf(w, "warning: the certificate expired at %s and has not been renewed: meshed peers refuse mTLS with this proxy\n", exp.UTC().Format(time.RFC3339))
			}
		}
	})
	mux.HandleFunc("GET /identity/certificate", func(w http.ResponseWriter, r *http.Request) {
		var chain []byte
		if o.CertificatePEM != nil {
			chain = o.CertificatePEM()
		}
		if len(chain) == 0 {
			http.Error(w, "no certificate yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(chain)
	})
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "live\n")
	})
	mux.HandleFunc("/shutdown", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		if !IsLoopback(r.RemoteAddr) {
			http.Error(w, "shutdown is only allowed from loopback", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, "shutting down\n")
		if o.Shutdown != nil {
			go o.Shutdown()
		}
	})
	if o.LogLevel != nil {
		mux.HandleFunc("/proxy-log-level", func(w http.ResponseWriter, r *http.Request) {
			switch r.Method {
			case http.MethodGet, http.MethodHead:
				_, _ = io.WriteString(w, logging.LevelName(o.LogLevel.Level())+"\n")
			case http.MethodPut:
				if !IsLoopback(r.RemoteAddr) {
					http.Error(w, "the log level can only be changed from loopback (kubectl port-forward, or mesh diagnostics proxy-log-level)", http.StatusForbidden)
					return
				}
				// A ReadTimeout on the server would also end long pprof
				// profiles: bound this body alone.
				_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
				body, err := io.ReadAll(io.LimitReader(r.Body, 64))
				if err != nil {
					http.Error(w, "reading the level: "+err.Error(), http.StatusBadRequest)
					return
				}
				level, err := logging.ParseNamedLevel(string(body))
				if err != nil {
					http.Error(w, fmt.Sprintf("invalid level %q (accepted: debug, info, warn, error)", strings.TrimSpace(string(body))), http.StatusBadRequest)
					return
				}
				old := o.LogLevel.Level()
				o.LogLevel.Set(level)
				if o.Log != nil {
					// At warn, or at the new level when above: the change
					// shows whatever the level.
					o.Log.Log(r.Context(), max(slog.LevelWarn, level), "log level changed", "from", logging.LevelName(old), "to", logging.LevelName(level))
				}
				_, _ = io.WriteString(w, logging.LevelName(level)+"\n")
			default:
				w.Header().Set("Allow", "GET, HEAD, PUT")
				http.Error(w, "use GET or PUT", http.StatusMethodNotAllowed)
			}
		})
	}
	if o.Pprof {
		loopbackOnly := func(h http.HandlerFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if !IsLoopback(r.RemoteAddr) {
					http.Error(w, "loopback only", http.StatusForbidden)
					return
				}
				h(w, r)
			}
		}
		mux.HandleFunc("/debug/pprof/", loopbackOnly(pprof.Index))
		mux.HandleFunc("/debug/pprof/profile", loopbackOnly(pprof.Profile))
	}
	return mux
}

// IsLoopback reports whether a "host:port" remote address is a loopback IP.
func IsLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeProcess(w io.Writer, start time.Time) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %d\n", start.Unix())
	fmt.Fprintf(w, "# HELP go_memstats_heap_inuse_bytes Heap bytes in use.\n# TYPE go_memstats_heap_inuse_bytes gauge\ngo_memstats_heap_inuse_bytes %d\n", ms.HeapInuse)
	fmt.Fprintf(w, "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	if rss, ok := residentBytes(); ok {
		fmt.Fprintf(w, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %d\n", rss)
	}
}

// writeIdentity writes identity_cert_expiration_timestamp_seconds (Linkerd's
// name), once there is a certificate.
func writeIdentity(w io.Writer, expiry func() time.Time) {
	if expiry == nil {
		return
	}
	exp := expiry()
	if exp.IsZero() {
		return
	}
	fmt.Fprintf(w, "# HELP identity_cert_expiration_timestamp_seconds Expiry of the proxy's current workload certificate, in seconds since the Unix epoch.\n# TYPE identity_cert_expiration_timestamp_seconds gauge\nidentity_cert_expiration_timestamp_seconds %d\n", exp.Unix())
}

// writeDiscovery writes discovery_unreachable and discovery_stale.
func writeDiscovery(w io.Writer, status func() (bool, int, int)) {
	if status == nil {
		return
	}
	down, eps, profiles := status()
	v := 0
	if down {
		v = 1
	}
	fmt.Fprintf(w, "# HELP discovery_unreachable 1 while the destination service is unreachable: the proxy's last discovery stream event was a failure.\n# TYPE discovery_unreachable gauge\ndiscovery_unreachable %d\n", v)
	fmt.Fprintf(w, "# HELP discovery_stale Targets served from a state the destination service no longer confirms (their stream failed, or it was kept from a closed one).\n# TYPE discovery_stale gauge\ndiscovery_stale{kind=\"endpoints\"} %d\ndiscovery_stale{kind=\"profile\"} %d\n", eps, profiles)
}

func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}
