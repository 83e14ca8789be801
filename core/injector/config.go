package injector

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/pkg/ports"
	"github.com/conduit-mesh/conduit/pkg/subnets"
	proxyconfig "github.com/conduit-mesh/conduit/proxy/config"
	"github.com/conduit-mesh/conduit/proxy/iptables"
)

// Names of the objects the injector reads in the control-plane namespace.
const (
	ConfigMapName    = "conduit-config"
	ConfigMapKey     = "values"
	TrustRootsName   = "conduit-identity-trust-roots"
	TrustRootsKey    = "ca-bundle.crt"
	DefaultNamespace = "conduit"
)

// Config is the proxy configuration the injector applies, read from the
// `values` key (YAML or JSON) of the ConfigMap conduit-config in the
// control-plane namespace. Empty fields take the defaults of DefaultConfig;
// docs/injector.md documents every key.
type Config struct {
	// TrustDomain of workload identities (cluster.local).
	TrustDomain string `json:"trustDomain,omitempty"`
	// Version is the control plane's version: the default proxy and
	// proxy-init image tag and the value of the conduit.dev/proxy-version label.
	Version string `json:"version,omitempty"`

	Proxy       ProxyConfig       `json:"proxy"`
	ProxyInit   ProxyInitConfig   `json:"proxyInit"`
	Identity    IdentityConfig    `json:"identity"`
	Destination DestinationConfig `json:"destination"`
}

// ProxyConfig configures the proxy container.
type ProxyConfig struct {
	Image           string `json:"image,omitempty"`           // repository without tag: localhost/conduit/proxy
	ImagePullPolicy string `json:"imagePullPolicy,omitempty"` // IfNotPresent
	UID             int64  `json:"uid,omitempty"`             // 2102
	LogLevel        string `json:"logLevel,omitempty"`        // info
	LogFormat       string `json:"logFormat,omitempty"`       // json
	InboundPort     int32  `json:"inboundPort,omitempty"`     // 4143
	OutboundPort    int32  `json:"outboundPort,omitempty"`    // 4140
	AdminPort       int32  `json:"adminPort,omitempty"`       // 4191
	// OpaquePorts are inbound ports carried as opaque TCP (comma-separated ports/ranges).
	OpaquePorts string `json:"opaquePorts,omitempty"`
	// ShutdownGracePeriod is how long the proxy drains on SIGTERM (30s).
	ShutdownGracePeriod string    `json:"shutdownGracePeriod,omitempty"`
	Resources           Resources `json:"resources"`
	// AwaitCommand runs in the proxy container as a postStart hook on
	// clusters without native sidecars: it must block until the proxy's
	// /ready answers (default: ["/usr/local/bin/proxy", "await"]).
	AwaitCommand []string `json:"awaitCommand,omitempty"`
	// IPv6 is the dual-stack mode of injected pods, given to proxy-init
	// (--ipv6) and the proxy (CONDUIT_PROXY_IPV6) alike: auto (the default
	// of both, so nothing is added to the pod), on or off.
	IPv6 string `json:"ipv6,omitempty"`
	// Discovery tunes the proxy's discovery streams; an empty field leaves
	// the proxy's own default, and nothing is added to the pod.
	Discovery ProxyDiscoveryConfig `json:"discovery"`
	// ClusterNetworks hold every pod and Service address of the cluster
	// (CONDUIT_PROXY_CLUSTER_NETWORKS): the proxy asks the destination
	// service about addresses inside them only. Empty: the proxy's default
	// (private and unique local ranges), and nothing is added to the pod.
	ClusterNetworks string `json:"clusterNetworks,omitempty"`
}

// ProxyDiscoveryConfig holds the defaults of the discovery annotations
// (proxy-discovery-idle-timeout, proxy-discovery-last-known-max-age).
type ProxyDiscoveryConfig struct {
	// IdleTimeout closes a target's streams once unused this long
	// (CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT; the proxy's default is 5m).
	IdleTimeout string `json:"idleTimeout,omitempty"`
	// LastKnownMaxAge is how long what closed streams said is kept for an
	// outage of the destination service; 0s keeps nothing
	// (CONDUIT_PROXY_DISCOVERY_LAST_KNOWN_MAX_AGE; the proxy's default is 1h).
	LastKnownMaxAge string `json:"lastKnownMaxAge,omitempty"`
}

// ProxyInitConfig configures the proxy-init init container.
type ProxyInitConfig struct {
	Image        string `json:"image,omitempty"`        // localhost/conduit/proxy-init
	IPTablesMode string `json:"iptablesMode,omitempty"` // auto, legacy or nft
	// Defaults for every pod, merged with the pod's annotations.
	SkipInboundPorts  string    `json:"skipInboundPorts,omitempty"`
	SkipOutboundPorts string    `json:"skipOutboundPorts,omitempty"`
	SkipSubnets       string    `json:"skipSubnets,omitempty"`
	Resources         Resources `json:"resources"`
}

// Resources holds Kubernetes quantities as strings ("100m", "20Mi"); an
// empty string sets nothing.
type Resources struct {
	CPURequest    string `json:"cpuRequest,omitempty"`
	CPULimit      string `json:"cpuLimit,omitempty"`
	MemoryRequest string `json:"memoryRequest,omitempty"`
	MemoryLimit   string `json:"memoryLimit,omitempty"`
}

// IdentityConfig says how the proxy gets its certificate.
type IdentityConfig struct {
	// TrustAnchorsPEM is the PEM bundle of roots. When empty, the injector
	// uses the ConfigMap conduit-identity-trust-roots (key ca-bundle.crt).
	TrustAnchorsPEM string `json:"trustAnchorsPEM,omitempty"`
	Address         string `json:"address,omitempty"`    // conduit-identity.<ns>.svc.cluster.local:8080
	ServerName      string `json:"serverName,omitempty"` // conduit-identity.<ns>.serviceaccount.identity.<ns>.<td>
	TokenAudience   string `json:"tokenAudience,omitempty"`
	// TokenExpirationSeconds of the projected ServiceAccount token (86400).
	TokenExpirationSeconds int64 `json:"tokenExpirationSeconds,omitempty"`
}

// DestinationConfig says where the proxy discovers services.
type DestinationConfig struct {
	Address    string `json:"address,omitempty"`    // conduit-destination.<ns>.svc.cluster.local:8086
	ServerName string `json:"serverName,omitempty"` // conduit-destination.<ns>.serviceaccount.identity.<ns>.<td>
}

// DefaultOpaquePorts are the server-speaks-first protocols of docs/architecture.md.
const DefaultOpaquePorts = "25,587,3306,4444,5432,6379,9300,11211"

// DefaultConfig returns the configuration used for every field that
// conduit-config leaves empty, for control plane namespace ns.
func DefaultConfig(ns string) Config {
	td := "cluster.local"
	return Config{
		TrustDomain: td,
		Version:     "dev",
		Proxy: ProxyConfig{
			Image:               "localhost/conduit/proxy",
			ImagePullPolicy:     "IfNotPresent",
			UID:                 iptables.DefaultProxyUID,
			LogLevel:            "info",
			LogFormat:           "json",
			InboundPort:         iptables.DefaultInboundPort,
			OutboundPort:        iptables.DefaultOutboundPort,
			AdminPort:           4191,
			OpaquePorts:         DefaultOpaquePorts,
			ShutdownGracePeriod: "30s",
			Resources:           Resources{CPURequest: "100m", MemoryRequest: "20Mi", MemoryLimit: "250Mi"},
			AwaitCommand:        []string{"/usr/local/bin/proxy", "await"},
			IPv6:                proxyconfig.IPv6Auto,
		},
		ProxyInit: ProxyInitConfig{
			Image:        "localhost/conduit/proxy-init",
			IPTablesMode: string(iptables.ModeAuto),
			Resources:    Resources{CPURequest: "10m", MemoryRequest: "10Mi", CPULimit: "100m", MemoryLimit: "50Mi"},
		},
		Identity: IdentityConfig{
			Address:                fmt.Sprintf("conduit-identity.%s.svc.cluster.local:8080", ns),
			ServerName:             fmt.Sprintf("conduit-identity.%s.serviceaccount.identity.%s.%s", ns, ns, td),
			TokenAudience:          "identity.conduit.dev",
			TokenExpirationSeconds: 86400,
		},
		Destination: DestinationConfig{
			Address:    fmt.Sprintf("conduit-destination.%s.svc.cluster.local:8086", ns),
			ServerName: fmt.Sprintf("conduit-destination.%s.serviceaccount.identity.%s.%s", ns, ns, td),
		},
	}
}

// ParseConfig reads the `values` document (YAML or JSON), fills the defaults
// for control-plane namespace ns and validates the result. Unknown keys are
// an error, so that a typo in the chart is caught.
func ParseConfig(ns string, values []byte) (Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(values, &c); err != nil {
		return Config{}, fmt.Errorf("injector: ConfigMap %s key %s: %w", ConfigMapName, ConfigMapKey, err)
	}
	c = c.withDefaults(ns)
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c Config) withDefaults(ns string) Config {
	d := DefaultConfig(ns)
	if c.TrustDomain != "" && c.TrustDomain != d.TrustDomain {
		d.Identity.ServerName = fmt.Sprintf("conduit-identity.%s.serviceaccount.identity.%s.%s", ns, ns, c.TrustDomain)
		d.Destination.ServerName = fmt.Sprintf("conduit-destination.%s.serviceaccount.identity.%s.%s", ns, ns, c.TrustDomain)
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&d.TrustDomain, c.TrustDomain)
	set(&d.Version, c.Version)
	p, dp := c.Proxy, &d.Proxy
	set(&dp.Image, p.Image)
	set(&dp.ImagePullPolicy, p.ImagePullPolicy)
	set(&dp.LogLevel, p.LogLevel)
	set(&dp.LogFormat, p.LogFormat)
	set(&dp.OpaquePorts, p.OpaquePorts)
	set(&dp.ShutdownGracePeriod, p.ShutdownGracePeriod)
	set(&dp.IPv6, p.IPv6)
	dp.Discovery = p.Discovery
	dp.ClusterNetworks = p.ClusterNetworks
	if p.UID != 0 {
		dp.UID = p.UID
	}
	if p.InboundPort != 0 {
		dp.InboundPort = p.InboundPort
	}
	if p.OutboundPort != 0 {
		dp.OutboundPort = p.OutboundPort
	}
	if p.AdminPort != 0 {
		dp.AdminPort = p.AdminPort
	}
	if len(p.AwaitCommand) > 0 {
		dp.AwaitCommand = p.AwaitCommand
	}
	dp.Resources = p.Resources.or(dp.Resources)
	pi, dpi := c.ProxyInit, &d.ProxyInit
	set(&dpi.Image, pi.Image)
	set(&dpi.IPTablesMode, pi.IPTablesMode)
	dpi.SkipInboundPorts, dpi.SkipOutboundPorts, dpi.SkipSubnets = pi.SkipInboundPorts, pi.SkipOutboundPorts, pi.SkipSubnets
	dpi.Resources = pi.Resources.or(dpi.Resources)
	id, did := c.Identity, &d.Identity
	set(&did.TrustAnchorsPEM, id.TrustAnchorsPEM)
	set(&did.Address, id.Address)
	set(&did.ServerName, id.ServerName)
	set(&did.TokenAudience, id.TokenAudience)
	if id.TokenExpirationSeconds != 0 {
		did.TokenExpirationSeconds = id.TokenExpirationSeconds
	}
	set(&d.Destination.Address, c.Destination.Address)
	set(&d.Destination.ServerName, c.Destination.ServerName)
	return d
}

// or returns r with the unset quantities of r taken from d. An explicit
// "0" disables a default (no request or limit).
func (r Resources) or(d Resources) Resources {
	pick := func(v, def string) string {
		switch v {
		case "":
			return def
		case "0":
			return ""
		}
		return v
	}
	return Resources{
		CPURequest:    pick(r.CPURequest, d.CPURequest),
		CPULimit:      pick(r.CPULimit, d.CPULimit),
		MemoryRequest: pick(r.MemoryRequest, d.MemoryRequest),
		MemoryLimit:   pick(r.MemoryLimit, d.MemoryLimit),
	}
}

// Validate checks every field that would otherwise yield broken pods.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("injector: %s %s: %s", ConfigMapName, key, fmt.Sprintf(format, args...)))
	}
	if err := validImage(c.Proxy.Image); err != nil {
		bad("proxy.image", "%v", err)
	}
	if err := validImage(c.ProxyInit.Image); err != nil {
		bad("proxyInit.image", "%v", err)
	}
	if err := validVersion(c.Version); err != nil {
		bad("version", "%v", err)
	}
	switch c.Proxy.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		bad("proxy.imagePullPolicy", "%q (accepted: Always, IfNotPresent, Never)", c.Proxy.ImagePullPolicy)
	}
	if c.Proxy.UID <= 0 {
		bad("proxy.uid", "must be a non-root UID, got %d", c.Proxy.UID)
	}
	if _, err := logging.ParseLevel(c.Proxy.LogLevel); err != nil {
		bad("proxy.logLevel", "%v", err)
	}
	if c.Proxy.LogFormat != "json" && c.Proxy.LogFormat != "text" {
		bad("proxy.logFormat", "%q (accepted: json, text)", c.Proxy.LogFormat)
	}
	for key, p := range map[string]int32{"proxy.inboundPort": c.Proxy.InboundPort, "proxy.outboundPort": c.Proxy.OutboundPort, "proxy.adminPort": c.Proxy.AdminPort} {
		if p < 1 || p > 65535 {
			bad(key, "%d is not a port", p)
		}
	}
	// The proxy binds the three in one network namespace.
	if c.Proxy.AdminPort == c.Proxy.InboundPort || c.Proxy.AdminPort == c.Proxy.OutboundPort {
		bad("proxy.adminPort", "%d is also the inbound or outbound port", c.Proxy.AdminPort)
	}
	if c.Proxy.InboundPort == c.Proxy.OutboundPort {
		bad("proxy.inboundPort", "%d is also the outbound port", c.Proxy.InboundPort)
	}
	if len(c.Proxy.AwaitCommand) == 0 || strings.TrimSpace(c.Proxy.AwaitCommand[0]) == "" {
		bad("proxy.awaitCommand", "%q has no command", c.Proxy.AwaitCommand)
	}
	if _, err := ports.Parse(c.Proxy.OpaquePorts, nil); err != nil {
		bad("proxy.opaquePorts", "%v", err)
	}
	if d, err := time.ParseDuration(c.Proxy.ShutdownGracePeriod); err != nil || d <= 0 {
		bad("proxy.shutdownGracePeriod", "%q is not a positive duration", c.Proxy.ShutdownGracePeriod)
	}
	if v := c.Proxy.Discovery.IdleTimeout; v != "" {
		if err := positiveDuration(v); err != nil {
			bad("proxy.discovery.idleTimeout", "%q is not a positive duration", v)
		}
	}
	if v := c.Proxy.Discovery.LastKnownMaxAge; v != "" {
		if err := nonNegativeDuration(v); err != nil {
			bad("proxy.discovery.lastKnownMaxAge", "%q is not a duration ≥ 0", v)
		}
	}
	if v := c.Proxy.ClusterNetworks; v != "" {
		if _, err := subnets.ParseNetworks(v); err != nil {
			bad("proxy.clusterNetworks", "%v", err)
		}
	}
	if err := checkIPv6Mode(c.Proxy.IPv6); err != nil {
		bad("proxy.ipv6", "%v", err)
	}
	if _, err := iptables.ParseMode(c.ProxyInit.IPTablesMode); err != nil {
		bad("proxyInit.iptablesMode", "%v", err)
	}
	if _, err := ports.Parse(c.ProxyInit.SkipInboundPorts, nil); err != nil {
		bad("proxyInit.skipInboundPorts", "%v", err)
	}
	if _, err := ports.Parse(c.ProxyInit.SkipOutboundPorts, nil); err != nil {
		bad("proxyInit.skipOutboundPorts", "%v", err)
	}
	if _, err := iptables.ParseSubnets(c.ProxyInit.SkipSubnets); err != nil {
		bad("proxyInit.skipSubnets", "%v", err)
	}
	for key, r := range map[string]Resources{"proxy.resources": c.Proxy.Resources, "proxyInit.resources": c.ProxyInit.Resources} {
		for k, q := range map[string]string{"cpuRequest": r.CPURequest, "cpuLimit": r.CPULimit, "memoryRequest": r.MemoryRequest, "memoryLimit": r.MemoryLimit} {
			if q == "" {
				continue
			}
			if _, err := resource.ParseQuantity(q); err != nil {
				bad(key+"."+k, "%q is not a quantity", q)
			}
		}
	}
	if c.Identity.TrustAnchorsPEM != "" {
		if _, err := pki.ParseCertificates([]byte(c.Identity.TrustAnchorsPEM)); err != nil {
			bad("identity.trustAnchorsPEM", "%v", err)
		}
	}
	if c.Identity.TokenExpirationSeconds < 600 {
		bad("identity.tokenExpirationSeconds", "must be at least 600 (Kubernetes' minimum), got %d", c.Identity.TokenExpirationSeconds)
	}
	for key, v := range map[string]string{"identity.address": c.Identity.Address, "destination.address": c.Destination.Address, "identity.tokenAudience": c.Identity.TokenAudience, "destination.serverName": c.Destination.ServerName} {
		if v == "" {
			bad(key, "must not be empty")
		}
	}
	// What the proxy checks at start (proxy/config): a value it refuses
	// would crash-loop every pod injected from now on.
	for key, v := range map[string]string{"identity.address": c.Identity.Address, "destination.address": c.Destination.Address} {
		if err := proxyconfig.CheckHostPort(v); v != "" && err != nil {
			bad(key, "%q is not host:port with a port in 1-65535: %v", v, err)
		}
	}
	for key, v := range map[string]string{"trustDomain": c.TrustDomain, "identity.serverName": c.Identity.ServerName, "destination.serverName": c.Destination.ServerName} {
		if err := pki.CheckDNSName(v); v != "" && err != nil {
			bad(key, "%q is not a DNS name: %v", v, err)
		}
	}
	return errors.Join(errs...)
}

// validImage accepts an image repository without tag or digest:
// [registry[:port]/]path with lowercase path components.
func validImage(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if strings.ContainsAny(s, "@ \t\n") {
		return fmt.Errorf("%q is not an image repository (no tag, digest or spaces)", s)
	}
	parts := strings.Split(s, "/")
	for i, p := range parts {
		if i == 0 && len(parts) > 1 && (strings.ContainsAny(p, ".:") || p == "localhost") {
			continue // registry host[:port]
		}
		if p == "" || strings.Contains(p, ":") {
			return fmt.Errorf("%q is not an image repository (give the tag separately)", s)
		}
		for _, r := range p {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
				return fmt.Errorf("%q is not an image repository (lowercase letters, digits, '.', '_', '-' and '/')", s)
			}
		}
	}
	return nil
}

// validVersion accepts a proxy version: an image tag that is also the value
// of the conduit.dev/proxy-version label, which the API server would refuse
// otherwise (at most 63 characters, starting and ending with a letter or a
// digit).
func validVersion(s string) error {
	if !validTag(s) {
		return fmt.Errorf("%q is not an image tag", s)
	}
	if errs := validation.IsValidLabelValue(s); len(errs) > 0 {
		return fmt.Errorf("%q is not a valid value of the label %s: %s", s, LabelProxyVersion, strings.Join(errs, "; "))
	}
	return nil
}

// validTag accepts a Docker tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func validTag(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
