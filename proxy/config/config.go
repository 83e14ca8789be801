package config

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/pkg/ipv6mode"
	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/pkg/ports"
	"github.com/conduit-mesh/conduit/pkg/subnets"
)

// DefaultOpaquePorts are the well-known server-speaks-first ports.
var DefaultOpaquePorts = []uint16{25, 587, 3306, 4444, 5432, 6379, 9300, 11211}

// DefaultClusterNetworks are where a cluster's pods and Services usually
// are: the private IPv4 ranges (RFC 1918), carrier-grade NAT's shared range
// (RFC 6598) and IPv6 unique local addresses (RFC 4193).
const DefaultClusterNetworks = "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fc00::/7"

// Config is the proxy's validated configuration.
type Config struct {
	LogLevel  string
	LogFormat string

	OutboundAddr string
	InboundAddr  string
	AdminAddr    string
	// IPv6 says whether the listeners get an IPv6 twin
	// (CONDUIT_PROXY_IPV6): IPv6Auto, IPv6On or IPv6Off.
	IPv6 string

	DestinationAddr string
	DestinationName string
	// DestinationContext is the raw JSON context token sent to the destination service.
	DestinationContext string

	IdentityAddr       string
	IdentityServerName string
	IdentityName       string
	IdentityTokenFile  string
	TrustAnchorsPEM    []byte
	TrustAnchors       *x509.CertPool

	InboundOpaquePorts []ports.Range
	ShutdownGrace      time.Duration
	// WaitForAppExit is how long, at most, the proxy keeps serving after
	// SIGTERM while the application still holds sockets (0: it drains at once).
	WaitForAppExit   time.Duration
	DetectTimeout    time.Duration
	ConnectTimeout   time.Duration
	DiscoveryTimeout time.Duration
	// DiscoveryIdleTimeout drops a name's discovery streams once unused
	// this long; DiscoveryLastKnownMaxAge is how long what they said is
	// kept for a new stream the destination service does not answer
	// (0: not kept).
	DiscoveryIdleTimeout     time.Duration
	DiscoveryLastKnownMaxAge time.Duration
	// ClusterNetworks hold every pod and Service address of the cluster
	// (CONDUIT_PROXY_CLUSTER_NETWORKS): an outbound connection to an
	// address outside them goes to it directly, without asking the
	// destination service.
	ClusterNetworks []netip.Prefix

	PodName       string
	PodNamespace  string
	ClusterDomain string

	// InboundTargetOverride ("host:port"), when set, replaces 127.0.0.1:<original port>
	// as the inbound target. For benchmarks and local runs without iptables.
	InboundTargetOverride string
	// OutboundOrigDstOverride ("ip:port"), when set, is used as the original
	// destination of every outbound connection. For benchmarks and local runs without iptables.
	OutboundOrigDstOverride string

	// TapEnabled serves conduit.tap.v1.Tap on TapAddr (CONDUIT_PROXY_TAP_ENABLED=true).
	TapEnabled bool
	// AccessLog is the access log's format: "" (none) or "json"
	// (CONDUIT_PROXY_ACCESS_LOG).
	AccessLog string
	// TapAddr is the tap listener, loopback only (CONDUIT_PROXY_TAP_ADDR, default 127.0.0.1:4190).
	TapAddr string

	// HTTP1FastPath forwards HTTP/1.1 requests on the proxy's own
	// HTTP/1.1 path instead of net/http (CONDUIT_PROXY_HTTP1_FAST_PATH,
	// default true).
	HTTP1FastPath bool
	// MeshedHTTP1 sends HTTP/1 requests to a meshed endpoint on pooled
	// HTTP/1.1 mTLS connections, on the fast path
	// (CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT=http1); by default (h2) they are
	// multiplexed on one HTTP/2 mTLS connection per endpoint.
	MeshedHTTP1 bool
	// HTTP2FastPath carries HTTP/2 between meshed proxies on the proxy's
	// own HTTP/2 client and server instead of net/http's
	// (CONDUIT_PROXY_HTTP2_FAST_PATH, default true).
	HTTP2FastPath bool
	// DebugPprof serves /debug/pprof/ on the admin port to loopback clients
	// (CONDUIT_PROXY_DEBUG_PPROF=true).
	DebugPprof bool
}

// Values of CONDUIT_PROXY_IPV6. A listener on the IPv4 wildcard (0.0.0.0)
// or loopback (127.0.0.1) gets a twin on the IPv6 wildcard (::) or loopback
// (::1) at the same port, and the other way round, so that the connections
// proxy-init redirects with ip6tables reach the proxy too.
// They are the modes of package ipv6mode, which proxy-init's --ipv6 takes
// too.
const (
	// IPv6Auto adds the twins when the host has IPv6, and otherwise logs
	// once that the proxy listens on IPv4 only.
	IPv6Auto = string(ipv6mode.Auto)
	// IPv6On adds them, and fails to start without IPv6.
	IPv6On = string(ipv6mode.On)
	// IPv6Off binds each listener to its address, in its family only.
	IPv6Off = string(ipv6mode.Off)
)

// Getenv looks up one variable; os.LookupEnv fits.
type Getenv func(string) (string, bool)

// FromEnv reads the process environment.
func FromEnv() (*Config, error) { return Load(os.LookupEnv) }

func get(env Getenv, name, def string) string {
	if v, ok := env(name); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return def
}

// Load validates the configuration found through env.
func Load(env Getenv) (*Config, error) {
	c := &Config{
		LogLevel:                get(env, "CONDUIT_PROXY_LOG_LEVEL", "info"),
		LogFormat:               get(env, "CONDUIT_PROXY_LOG_FORMAT", "json"),
		OutboundAddr:            get(env, "CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:4140"),
		InboundAddr:             get(env, "CONDUIT_PROXY_INBOUND_LISTEN_ADDR", "0.0.0.0:4143"),
		AdminAddr:               get(env, "CONDUIT_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:4191"),
		IPv6:                    get(env, "CONDUIT_PROXY_IPV6", IPv6Auto),
		DestinationAddr:         get(env, "CONDUIT_PROXY_DESTINATION_ADDR", "conduit-destination.conduit.svc.cluster.local:8086"),
		DestinationName:         get(env, "CONDUIT_PROXY_DESTINATION_NAME", "conduit-destination.conduit.serviceaccount.identity.conduit.cluster.local"),
		DestinationContext:      get(env, "CONDUIT_PROXY_DESTINATION_CONTEXT", ""),
		IdentityAddr:            get(env, "CONDUIT_PROXY_IDENTITY_ADDR", "conduit-identity.conduit.svc.cluster.local:8080"),
		IdentityName:            get(env, "CONDUIT_PROXY_IDENTITY_NAME", ""),
		IdentityTokenFile:       get(env, "CONDUIT_PROXY_IDENTITY_TOKEN_FILE", "/var/run/conduit/identity/token"),
		PodName:                 get(env, "CONDUIT_PROXY_POD_NAME", ""),
		PodNamespace:            get(env, "CONDUIT_PROXY_POD_NAMESPACE", ""),
		ClusterDomain:           get(env, "CONDUIT_PROXY_CLUSTER_DOMAIN", "cluster.local"),
		InboundTargetOverride:   get(env, "CONDUIT_PROXY_INBOUND_TARGET_OVERRIDE", ""),
		OutboundOrigDstOverride: get(env, "CONDUIT_PROXY_OUTBOUND_ORIG_DST_OVERRIDE", ""),
		TapAddr:                 get(env, "CONDUIT_PROXY_TAP_ADDR", "127.0.0.1:4190"),
	}
	// The identity server name may be set to the empty string on purpose (plaintext, loopback only).
	if v, ok := env("CONDUIT_PROXY_IDENTITY_SERVER_NAME"); ok {
		c.IdentityServerName = strings.TrimSpace(v)
	} else {
		c.IdentityServerName = "conduit-identity.conduit.serviceaccount.identity.conduit.cluster.local"
	}

	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "warning", "error":
	default:
		return nil, fmt.Errorf("config: CONDUIT_PROXY_LOG_LEVEL=%q is invalid (accepted: debug, info, warn, error)", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		return nil, fmt.Errorf("config: CONDUIT_PROXY_LOG_FORMAT=%q is invalid (accepted: json, text)", c.LogFormat)
	}
	for _, a := range []struct{ name, val string }{
		{"CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR", c.OutboundAddr},
		{"CONDUIT_PROXY_INBOUND_LISTEN_ADDR", c.InboundAddr},
		{"CONDUIT_PROXY_ADMIN_LISTEN_ADDR", c.AdminAddr},
	} {
		if err := checkListen(a.val); err != nil {
			return nil, fmt.Errorf("config: %s=%q is invalid (accepted: ip:port with a port in 0-65535, 0 picks a free port): %w", a.name, a.val, err)
		}
	}
	if _, err := ipv6mode.Parse(c.IPv6); err != nil {
		// The form of every variable here (TestEveryDocumentedVariable)
		// rather than Parse's own.
		return nil, fmt.Errorf("config: CONDUIT_PROXY_IPV6=%q is invalid (accepted: %s)", c.IPv6, ipv6mode.Accepted)
	}
	for _, a := range []struct{ name, val string }{
		{"CONDUIT_PROXY_DESTINATION_ADDR", c.DestinationAddr},
		{"CONDUIT_PROXY_IDENTITY_ADDR", c.IdentityAddr},
	} {
		if err := CheckHostPort(a.val); err != nil {
			return nil, fmt.Errorf("config: %s=%q is invalid (accepted: host:port with a port in 1-65535): %w", a.name, a.val, err)
		}
	}
	for _, a := range []struct{ name, val string }{
		{"CONDUIT_PROXY_INBOUND_TARGET_OVERRIDE", c.InboundTargetOverride},
		{"CONDUIT_PROXY_OUTBOUND_ORIG_DST_OVERRIDE", c.OutboundOrigDstOverride},
	} {
		if a.val == "" {
			continue
		}
		if err := CheckHostPort(a.val); err != nil {
			return nil, fmt.Errorf("config: %s=%q is invalid (accepted: empty or host:port): %w", a.name, a.val, err)
		}
	}
	if c.IdentityName == "" {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_IDENTITY_NAME is required (accepted: <sa>.<ns>.serviceaccount.identity.<control-plane-ns>.<trust-domain>)")
	}
	if err := pki.CheckDNSName(c.IdentityName); err != nil {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_IDENTITY_NAME=%q is invalid (accepted: a DNS name such as web.emojivoto.serviceaccount.identity.conduit.cluster.local): %w", c.IdentityName, err)
	}
	if c.DestinationName != "" {
		if err := pki.CheckDNSName(c.DestinationName); err != nil {
			return nil, fmt.Errorf("config: CONDUIT_PROXY_DESTINATION_NAME=%q is invalid (accepted: the destination service's identity, a DNS name): %w", c.DestinationName, err)
		}
	}
	if c.IdentityServerName == "" {
		host, _, _ := net.SplitHostPort(c.IdentityAddr)
		if !IsLoopbackHost(host) {
			return nil, fmt.Errorf("config: CONDUIT_PROXY_IDENTITY_SERVER_NAME is empty but CONDUIT_PROXY_IDENTITY_ADDR=%q is not a loopback address (accepted: an identity name, or empty only with a loopback identity address)", c.IdentityAddr)
		}
	} else if err := pki.CheckDNSName(c.IdentityServerName); err != nil {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_IDENTITY_SERVER_NAME=%q is invalid (accepted: the identity service's identity, a DNS name, or empty for loopback plaintext): %w", c.IdentityServerName, err)
	}

	anchors := get(env, "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS", "")
	if anchors == "" {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS is required (accepted: a PEM bundle of one or more CA certificates)")
	}
	certs, err := pki.ParseCertificates([]byte(anchors))
	if err != nil {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS is invalid (accepted: a PEM bundle of one or more CA certificates): %w", err)
	}
	c.TrustAnchorsPEM = []byte(anchors)
	c.TrustAnchors = x509.NewCertPool()
	for _, crt := range certs {
		c.TrustAnchors.AddCert(crt)
	}

	opaque := get(env, "CONDUIT_PROXY_INBOUND_OPAQUE_PORTS", "")
	if _, set := env("CONDUIT_PROXY_INBOUND_OPAQUE_PORTS"); !set {
		opaque = joinPorts(DefaultOpaquePorts)
	}
	if c.InboundOpaquePorts, err = ParsePorts(opaque); err != nil {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_INBOUND_OPAQUE_PORTS=%q is invalid (accepted: comma-separated ports or ranges in 1-65535, e.g. 25,3306,8000-8010): %w", opaque, err)
	}

	networks := get(env, "CONDUIT_PROXY_CLUSTER_NETWORKS", DefaultClusterNetworks)
	if c.ClusterNetworks, err = subnets.ParseNetworks(networks); err != nil {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_CLUSTER_NETWORKS=%q is invalid (accepted: comma-separated IPv4 and IPv6 CIDRs holding every pod and Service address, e.g. %s; 0.0.0.0/0,::/0 asks the destination service about every address): %w", networks, DefaultClusterNetworks, err)
	}

	durations := []struct {
		name string
		def  string
		dst  *time.Duration
	}{
		{"CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD", "30s", &c.ShutdownGrace},
		{"CONDUIT_PROXY_WAIT_FOR_APP_EXIT", "0s", &c.WaitForAppExit},
		{"CONDUIT_PROXY_DETECT_PROTOCOL_TIMEOUT", "10s", &c.DetectTimeout},
		{"CONDUIT_PROXY_CONNECT_TIMEOUT", "1s", &c.ConnectTimeout},
		{"CONDUIT_PROXY_DISCOVERY_TIMEOUT", "1s", &c.DiscoveryTimeout},
		{"CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT", "5m", &c.DiscoveryIdleTimeout},
		{"CONDUIT_PROXY_DISCOVERY_LAST_KNOWN_MAX_AGE", "1h", &c.DiscoveryLastKnownMaxAge},
	}
	for _, d := range durations {
		v := get(env, d.name, d.def)
		dur, err := time.ParseDuration(v)
		if err != nil || dur < 0 {
			return nil, fmt.Errorf("config: %s=%q is invalid (accepted: a non-negative Go duration such as 500ms, 10s, 1m)", d.name, v)
		}
		*d.dst = dur
	}
	if c.DetectTimeout == 0 {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_DETECT_PROTOCOL_TIMEOUT=%q is invalid (accepted: a positive Go duration such as 10s)", get(env, "CONDUIT_PROXY_DETECT_PROTOCOL_TIMEOUT", ""))
	}
	if c.DiscoveryIdleTimeout == 0 {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT=%q is invalid (accepted: a positive Go duration such as 5m)", get(env, "CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT", ""))
	}
	if err := pki.CheckDNSName(c.ClusterDomain); err != nil {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_CLUSTER_DOMAIN=%q is invalid (accepted: a DNS suffix such as cluster.local): %w", c.ClusterDomain, err)
	}

	if c.DestinationContext != "" {
		var ctx map[string]any
		if err := json.Unmarshal([]byte(c.DestinationContext), &ctx); err != nil {
			return nil, fmt.Errorf("config: CONDUIT_PROXY_DESTINATION_CONTEXT=%q is invalid (accepted: a JSON object such as {\"ns\":\"emojivoto\",\"pod\":\"web-0\"}): %w", c.DestinationContext, err)
		}
		if ns, ok := ctx["ns"].(string); ok && c.PodNamespace == "" {
			c.PodNamespace = ns
		}
		if pod, ok := ctx["pod"].(string); ok && c.PodName == "" {
			c.PodName = pod
		}
	}
	if v := get(env, "CONDUIT_PROXY_TAP_ENABLED", "false"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("config: CONDUIT_PROXY_TAP_ENABLED=%q is invalid (accepted: true, false)", v)
		}
		c.TapEnabled = on
	}
	switch v := get(env, "CONDUIT_PROXY_ACCESS_LOG", ""); v {
	case "", "json":
		c.AccessLog = v
	default:
		return nil, fmt.Errorf("config: CONDUIT_PROXY_ACCESS_LOG=%q is invalid (accepted: json, or empty for none)", v)
	}
	if v := get(env, "CONDUIT_PROXY_HTTP1_FAST_PATH", "true"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("config: CONDUIT_PROXY_HTTP1_FAST_PATH=%q is invalid (accepted: true, false)", v)
		}
		c.HTTP1FastPath = on
	}
	if v := get(env, "CONDUIT_PROXY_HTTP2_FAST_PATH", "true"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("config: CONDUIT_PROXY_HTTP2_FAST_PATH=%q is invalid (accepted: true, false)", v)
		}
		c.HTTP2FastPath = on
	}
	if v := get(env, "CONDUIT_PROXY_DEBUG_PPROF", "false"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("config: CONDUIT_PROXY_DEBUG_PPROF=%q is invalid (accepted: true, false)", v)
		}
		c.DebugPprof = on
	}
	switch v := get(env, "CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT", "h2"); v {
	case "h2":
	case "http1":
		if !c.HTTP1FastPath {
			return nil, fmt.Errorf("config: CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT=%q needs CONDUIT_PROXY_HTTP1_FAST_PATH=true", v)
		}
		c.MeshedHTTP1 = true
	default:
		return nil, fmt.Errorf("config: CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT=%q is invalid (accepted: h2, http1)", v)
	}
	// Tap has no authentication of its own: it must stay on loopback.
	if err := checkListen(c.TapAddr); err != nil {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_TAP_ADDR=%q is invalid (accepted: a loopback ip:port such as 127.0.0.1:4190): %w", c.TapAddr, err)
	}
	if host, _, _ := net.SplitHostPort(c.TapAddr); !IsLoopbackHost(host) {
		return nil, fmt.Errorf("config: CONDUIT_PROXY_TAP_ADDR=%q is invalid (accepted: a loopback ip:port such as 127.0.0.1:4190): tap has no authentication and is served on loopback only", c.TapAddr)
	}
	return c, nil
}

// IsLoopbackHost reports whether host is "localhost" or a loopback IP.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("host %q is not an IP address", host)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q out of range", port)
	}
	return nil
}

// CheckHostPort checks a "host:port" address with a port in 1-65535, as the
// proxy checks the control plane's addresses (the injector checks its
// config with it).
func CheckHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("port %q out of range", port)
	}
	return nil
}

// ParsePorts parses a list of ports and ranges ("25,587,8000-8010", read
// as the injector and the destination service read it: see pkg/ports) into
// ranges. Empty means no port.
func ParsePorts(s string) ([]ports.Range, error) {
	rs, err := ports.Parse(s, nil)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

func joinPorts(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}
