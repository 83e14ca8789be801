package injector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/pkg/ports"
	"github.com/conduit-mesh/conduit/pkg/ports/podports"
	proxyconfig "github.com/conduit-mesh/conduit/proxy/config"
)

// Names of what the injector adds to a pod.
const (
	ProxyContainerName     = "conduit-proxy"
	ProxyInitContainerName = "conduit-init"
	TokenVolumeName        = "conduit-identity-token"
	XtablesVolumeName      = "conduit-xtables-lock"
	TokenMountPath         = "/var/run/conduit/identity"
	TokenFile              = TokenMountPath + "/token"
)

// JSONPatchOp is one RFC 6902 operation of the admission patch.
type JSONPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// PatchContributor lets an extension add to the patch of a pod that is
// being injected (for instance an environment variable of the proxy). It is
// only called for pods that are injected, after the core patch is
// computed; its operations are applied after the core ones (and after
// those of the contributors before it), so their paths address
// req.Patched. A contributor runs under ContributorTimeout; when it fails,
// times out or returns operations that do not apply, the pod is injected
// without its operations and a warning (admission warning and Event) says so,
// unless its error wraps ErrContributionRequired: then the pod is refused.
type PatchContributor interface {
	Contribute(ctx context.Context, req *ContributionRequest) ([]JSONPatchOp, error)
}

// ErrContributionRequired, wrapped in a contributor's error, refuses the pod
// instead of injecting it without the contribution (an extension whose
// failure policy is Fail).
var ErrContributionRequired = errors.New("a required extension patch failed")

// ContributionRequest is what a PatchContributor sees.
type ContributionRequest struct {
	// Pod is the pod as submitted (do not modify it).
	Pod *corev1.Pod
	// Patched is the pod with the core patch and the earlier contributions
	// applied: the contributor's operations apply to it.
	Patched *corev1.Pod
	// Namespace is the pod's namespace; NamespaceLabels and
	// NamespaceAnnotations are the namespace's.
	Namespace            string
	NamespaceLabels      map[string]string
	NamespaceAnnotations map[string]string
	// ProxyPath is the JSON pointer of the proxy container in Patched
	// ("/spec/initContainers/1" for a native sidecar, "/spec/containers/0"
	// otherwise).
	ProxyPath string
	// DryRun tells that the admission is a dry run: a contributor must have
	// no side effect (no Event).
	DryRun bool
}

// ContributorTimeout bounds each PatchContributor call.
const ContributorTimeout = time.Second

// Request is what the injector needs to decide about one pod.
type Request struct {
	Pod *corev1.Pod
	// Namespace is the pod's namespace name (the pod's own field may be empty at admission).
	Namespace string
	// NamespaceLabels and NamespaceAnnotations are those of the pod's namespace.
	NamespaceLabels      map[string]string
	NamespaceAnnotations map[string]string
	// DryRun is set for dry-run admissions (passed on to contributors).
	DryRun bool
}

// Result is the injector's decision about one pod.
type Result struct {
	Injected bool
	// Reason says why the pod was not injected (Injected false).
	Reason string
	// Patch is the JSON patch to apply (empty when not injected).
	Patch []JSONPatchOp
	// Warnings name invalid annotations replaced by their defaults; each
	// becomes an admission warning and a Warning Event.
	Warnings []string
}

// Injector computes the patch of a pod. It is safe for concurrent use.
type Injector struct {
	// ControlPlaneNamespace is never injected, nor is kube-system.
	ControlPlaneNamespace string
	// Config returns the current proxy configuration.
	Config func() Config
	// NativeSidecar selects the proxy as an init container with
	// restartPolicy Always (Kubernetes 1.29+) rather than a regular container.
	NativeSidecar bool
	// Contributors add to the patch of injected pods (none by default).
	Contributors []PatchContributor
}

// Inject decides whether req.Pod is injected and returns the patch. A
// *Denial error means the pod must be refused with its message.
func (inj *Injector) Inject(ctx context.Context, req Request) (*Result, error) {
	pod := req.Pod
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	if ns == "kube-system" || ns == inj.ControlPlaneNamespace {
		return &Result{Reason: fmt.Sprintf("namespace %s is never injected", ns)}, nil
	}
	if alreadyInjected(pod) {
		return &Result{Reason: "already injected"}, nil
	}
	want, reason, err := wantsInjection(req.NamespaceAnnotations, pod.Annotations)
	if err != nil || !want {
		return &Result{Reason: reason}, err
	}
	if pod.Spec.HostNetwork {
		return &Result{
			Reason:   "hostNetwork pod",
			Warnings: []string{"pod uses hostNetwork: the proxy is not injected (its nat rules would apply to the node)"},
		}, nil
	}
	ann, err := resolveAnnotations(req.NamespaceAnnotations, pod)
	if err != nil {
		return nil, err
	}
	cfg := inj.Config()
	if strings.TrimSpace(cfg.Identity.TrustAnchorsPEM) == "" {
		return nil, &Denial{Message: fmt.Sprintf("conduit injector: no trust anchors configured (ConfigMap %s/%s key %s, identity.trustAnchorsPEM, or ConfigMap %s/%s); refusing to create a pod whose proxy could not get an identity",
			inj.ControlPlaneNamespace, ConfigMapName, ConfigMapKey, inj.ControlPlaneNamespace, TrustRootsName)}
	}
	b := builder{cfg: cfg, ann: ann.values, ns: ns, cpns: inj.ControlPlaneNamespace, pod: pod}
	native := b.native(inj.NativeSidecar)
	if err := b.checkPorts(native); err != nil {
		return nil, err
	}
	proxy, err := b.proxyContainer(native)
	if err != nil {
		return nil, err
	}
	initC, err := b.proxyInitContainer()
	if err != nil {
		return nil, err
	}
	b.checkUsers()
	res := &Result{Injected: true, Warnings: ann.warnings}
	res.Warnings = append(res.Warnings, b.warnings...)
	res.Patch = b.patch(initC, proxy, native)
	if len(inj.Contributors) > 0 {
		warnings, err := inj.contribute(ctx, req, ns, native, res)
		if err != nil {
			return nil, err
		}
		res.Warnings = append(res.Warnings, warnings...)
	}
	return res, nil
}

// contribute appends the contributors' operations to res.Patch and returns
// a warning for each contributor whose operations were left out, or the
// error of one that requires its operations (ErrContributionRequired).
func (inj *Injector) contribute(ctx context.Context, req Request, ns string, native bool, res *Result) ([]string, error) {
	patched, err := ApplyPatch(req.Pod, res.Patch)
	if err != nil {
		return []string{fmt.Sprintf("extensions' patches skipped: the core patch does not apply: %v", err)}, nil
	}
	var warnings []string
	for _, c := range inj.Contributors {
		cctx, cancel := context.WithTimeout(ctx, ContributorTimeout)
		ops, err := c.Contribute(cctx, &ContributionRequest{
			Pod: req.Pod, Patched: patched, Namespace: ns,
			NamespaceLabels: req.NamespaceLabels, NamespaceAnnotations: req.NamespaceAnnotations,
			ProxyPath: ProxyPath(native), DryRun: req.DryRun,
		})
		cancel()
		if err == nil && len(ops) > 0 {
			var next *corev1.Pod
			if next, err = ApplyPatch(patched, ops); err == nil {
				patched = next
			}
		}
		if errors.Is(err, ErrContributionRequired) {
			// A Denial: the pod is refused with this message, whatever the
			// webhook's own failure policy.
			return nil, &Denial{Message: "conduit injector: " + err.Error()}
		}
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("extension patch %T left out: %v", c, err))
			continue
		}
		res.Patch = append(res.Patch, ops...)
	}
	return warnings, nil
}

// ProxyPath is the JSON pointer of the injected proxy container in the
// patched pod, for contributors: /spec/initContainers/1 with native
// sidecars, /spec/containers/0 otherwise.
func ProxyPath(native bool) string {
	if native {
		return "/spec/initContainers/1"
	}
	return "/spec/containers/0"
}

func alreadyInjected(pod *corev1.Pod) bool {
	if pod.Annotations[AnnotationInjectStatus] == StatusInjected {
		return true
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == ProxyContainerName || c.Name == ProxyInitContainerName {
				return true
			}
		}
	}
	return false
}

// wantsInjection applies the conduit.dev/inject annotation: the pod's
// value wins over the namespace's. Any other value than enabled or disabled
// is refused.
func wantsInjection(nsAnn, podAnn map[string]string) (bool, string, error) {
	check := func(v, where string) error {
		if v != InjectEnabled && v != InjectDisabled {
			return &Denial{Message: fmt.Sprintf("conduit injector: annotation %s=%q on the %s is invalid; accepted: %s, %s", AnnotationInject, v, where, InjectEnabled, InjectDisabled)}
		}
		return nil
	}
	if v, ok := podAnn[AnnotationInject]; ok {
		if err := check(v, "pod"); err != nil {
			return false, "", err
		}
		return v == InjectEnabled, "pod annotation " + AnnotationInject + "=" + v, nil
	}
	if v, ok := nsAnn[AnnotationInject]; ok {
		if err := check(v, "namespace"); err != nil {
			return false, "", err
		}
		return v == InjectEnabled, "namespace annotation " + AnnotationInject + "=" + v, nil
	}
	return false, "no " + AnnotationInject + " annotation", nil
}

type builder struct {
	cfg      Config
	ann      map[string]string
	ns, cpns string
	pod      *corev1.Pod
	warnings []string
}

func (b *builder) get(annotation, def string) string {
	if v, ok := b.ann[annotation]; ok {
		return v
	}
	return def
}

// ports returns the port list of an annotation in numbers (the names of the
// pod's container ports resolved), else def.
func (b *builder) ports(annotation, def string) string {
	v, ok := b.ann[annotation]
	if !ok {
		return def
	}
	rs, _ := ports.Parse(v, podports.Names(b.pod)) // valid: resolveAnnotations checked it
	return ports.Format(rs)
}

// checkUsers warns about the pod's containers that run as the proxy's user:
// proxy-init's rules exempt that user's traffic from redirection (the
// proxy's own connections must not loop back into it), so theirs bypasses
// the proxy, in clear and uncounted, and the proxy cannot see them when it
// waits for the application to exit. Only a uid the spec sets is known here;
// an image's USER is not.
func (b *builder) checkUsers() {
	var podUID *int64
	if sc := b.pod.Spec.SecurityContext; sc != nil {
		podUID = sc.RunAsUser
	}
	for _, c := range append(append([]corev1.Container{}, b.pod.Spec.InitContainers...), b.pod.Spec.Containers...) {
		uid := podUID
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			uid = c.SecurityContext.RunAsUser
		}
		if uid != nil && *uid == b.cfg.Proxy.UID {
			b.warnings = append(b.warnings, fmt.Sprintf("container %q runs as uid %d, the proxy's (proxy.uid): its traffic bypasses the proxy (no mTLS, no metrics) and the proxy cannot tell when it exits; run it as another user", c.Name, *uid))
		}
	}
}

// checkPorts refuses a pod with a container that declares a TCP port the
// proxy listens on and runs while the proxy does: the one that binds second
// would crash-loop. That is every container, and the init containers that run
// once the proxy is up: all of them behind a native sidecar, only the pod's
// own sidecars (restartPolicy Always) before a regular proxy container. A port
// a container listens on without declaring it is not known here.
func (b *builder) checkPorts(native bool) error {
	p := b.cfg.Proxy
	proxyPorts := map[int32]string{p.InboundPort: "inbound", p.OutboundPort: "outbound", p.AdminPort: "admin"}
	var bad []string
	check := func(c corev1.Container) {
		for _, cp := range c.Ports {
			if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
				continue
			}
			if use, ok := proxyPorts[cp.ContainerPort]; ok {
				bad = append(bad, fmt.Sprintf("container %q declares port %d, the proxy's %s port", c.Name, cp.ContainerPort, use))
			}
		}
	}
	for _, c := range b.pod.Spec.InitContainers {
		if native || (c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways) {
			check(c)
		}
	}
	for _, c := range b.pod.Spec.Containers {
		check(c)
	}
	if len(bad) == 0 {
		return nil
	}
	return &Denial{Message: fmt.Sprintf("conduit injector: %s: the proxy listens there (in the pod's network namespace), so one of them would fail to start; accepted: TCP ports other than %d, %d and %d (move the application, or opt the pod out with %s: %s)",
		strings.Join(bad, "; "), p.InboundPort, p.OutboundPort, p.AdminPort, AnnotationInject, InjectDisabled)}
}

// native is how the proxy is added: as the injector runs (native, its
// default on Kubernetes 1.29 and later), unless the pod's sidecar-mode
// annotation asks for a regular container; native where the injector runs
// regular (an older cluster, or --sidecar-mode regular) is not granted, with
// a warning.
func (b *builder) native(injectorNative bool) bool {
	switch b.ann[AnnotationSidecarMode] {
	case "regular":
		return false
	case "native":
		if !injectorNative {
			b.warnings = append(b.warnings, fmt.Sprintf("annotation %s=native: the injector adds regular containers (Kubernetes before 1.29, or its --sidecar-mode regular); the proxy is a regular container", AnnotationSidecarMode))
		}
	}
	return injectorNative
}

// ipv6 is the pod's IPv6 mode, which proxy-init (--ipv6) and the proxy
// (CONDUIT_PROXY_IPV6) get alike: set apart, a pod's IPv6 connections would
// bypass the proxy or be refused (docs/proxy.md). auto is the default of
// both and is not written, so that pods whose mode nobody chose keep the
// spec they had before the setting existed. An empty mode (a Config not
// filled by ParseConfig or DefaultConfig) is auto too.
func (b *builder) ipv6() string {
	if v := b.get(AnnotationIPv6, b.cfg.Proxy.IPv6); v != "" {
		return v
	}
	return proxyconfig.IPv6Auto
}

// version is the proxy image tag and the proxy-version label.
func (b *builder) version() string { return b.get(AnnotationProxyVersion, b.cfg.Version) }

// identityName is the proxy's identity: that of the pod's ServiceAccount,
// whose token the proxy presents. The deprecated serviceAccount field names
// it when serviceAccountName does not (the API server copies one to the
// other; a manifest rendered offline by `mesh inject --manual` may have only
// the old one).
func (b *builder) identityName() (string, error) {
	sa := b.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = b.pod.Spec.DeprecatedServiceAccount
	}
	if sa == "" {
		sa = "default"
	}
	name := fmt.Sprintf("%s.%s.serviceaccount.identity.%s.%s", sa, b.ns, b.cpns, b.cfg.TrustDomain)
	// The proxy refuses an identity that is not a DNS name (it would
	// crash-loop): only a very long ServiceAccount name gets there.
	if err := pki.CheckDNSName(name); err != nil {
		return "", &Denial{Message: fmt.Sprintf("conduit injector: the proxy's identity %q, from ServiceAccount %q, is not a valid DNS name (%v); accepted: a ServiceAccount name short enough for the identity to be 253 characters at most",
			name, sa, err)}
	}
	return name, nil
}

func (b *builder) proxyResources() (corev1.ResourceRequirements, error) {
	r := b.cfg.Proxy.Resources
	r.CPURequest = b.get(AnnotationProxyCPURequest, r.CPURequest)
	r.CPULimit = b.get(AnnotationProxyCPULimit, r.CPULimit)
	r.MemoryRequest = b.get(AnnotationProxyMemoryRequest, r.MemoryRequest)
	r.MemoryLimit = b.get(AnnotationProxyMemoryLimit, r.MemoryLimit)
	req, err := r.requirements()
	if err != nil {
		return req, err
	}
	// A request above its limit is rejected by the API server with a
	// message that does not name the annotation: say it here.
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		rq, okr := req.Requests[name]
		lim, okl := req.Limits[name]
		if okr && okl && rq.Cmp(lim) > 0 {
			return req, &Denial{Message: fmt.Sprintf("conduit injector: proxy %s request %s is above its limit %s (annotations %sproxy-%s-request / -limit or the conduit-config defaults); accepted: a request not above the limit",
				name, rq.String(), lim.String(), configPrefix, name)}
		}
	}
	return req, nil
}

func (r Resources) requirements() (corev1.ResourceRequirements, error) {
	out := corev1.ResourceRequirements{}
	set := func(list *corev1.ResourceList, name corev1.ResourceName, v string) error {
		if v == "" {
			return nil
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("injector: %s quantity %q: %w", name, v, err)
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
		return nil
	}
	for _, e := range []error{
		set(&out.Requests, corev1.ResourceCPU, r.CPURequest),
		set(&out.Requests, corev1.ResourceMemory, r.MemoryRequest),
		set(&out.Limits, corev1.ResourceCPU, r.CPULimit),
		set(&out.Limits, corev1.ResourceMemory, r.MemoryLimit),
	} {
		if e != nil {
			return out, e
		}
	}
	return out, nil
}

func (b *builder) proxyContainer(native bool) (corev1.Container, error) {
	cfg := b.cfg
	p := cfg.Proxy
	res, err := b.proxyResources()
	if err != nil {
		return corev1.Container{}, err
	}
	identity, err := b.identityName()
	if err != nil {
		return corev1.Container{}, err
	}
	ctxJSON, _ := json.Marshal(map[string]string{
		"ns":       "$(CONDUIT_PROXY_POD_NAMESPACE)",
		"nodeName": "$(_CONDUIT_PROXY_NODE_NAME)",
		"pod":      "$(CONDUIT_PROXY_POD_NAME)",
	})
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	env := []corev1.EnvVar{
		// Downward API first: the variables below refer to them.
		field("CONDUIT_PROXY_POD_NAME", "metadata.name"),
		field("CONDUIT_PROXY_POD_NAMESPACE", "metadata.namespace"),
		field("_CONDUIT_PROXY_NODE_NAME", "spec.nodeName"),
		{Name: "CONDUIT_PROXY_LOG_LEVEL", Value: b.get(AnnotationProxyLogLevel, p.LogLevel)},
		{Name: "CONDUIT_PROXY_LOG_FORMAT", Value: p.LogFormat},
		{Name: "CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR", Value: "127.0.0.1:" + strconv.Itoa(int(p.OutboundPort))},
		{Name: "CONDUIT_PROXY_INBOUND_LISTEN_ADDR", Value: "0.0.0.0:" + strconv.Itoa(int(p.InboundPort))},
		{Name: "CONDUIT_PROXY_ADMIN_LISTEN_ADDR", Value: "0.0.0.0:" + strconv.Itoa(int(p.AdminPort))},
		{Name: "CONDUIT_PROXY_DESTINATION_ADDR", Value: cfg.Destination.Address},
		{Name: "CONDUIT_PROXY_DESTINATION_NAME", Value: cfg.Destination.ServerName},
		{Name: "CONDUIT_PROXY_DESTINATION_CONTEXT", Value: string(ctxJSON)},
		{Name: "CONDUIT_PROXY_IDENTITY_ADDR", Value: cfg.Identity.Address},
		{Name: "CONDUIT_PROXY_IDENTITY_SERVER_NAME", Value: cfg.Identity.ServerName},
		{Name: "CONDUIT_PROXY_IDENTITY_NAME", Value: identity},
		{Name: "CONDUIT_PROXY_IDENTITY_TOKEN_FILE", Value: TokenFile},
		{Name: "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS", Value: cfg.Identity.TrustAnchorsPEM},
		{Name: "CONDUIT_PROXY_INBOUND_OPAQUE_PORTS", Value: b.ports(AnnotationOpaquePorts, p.OpaquePorts)},
		{Name: "CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD", Value: b.get(AnnotationShutdownGracePeriod, p.ShutdownGracePeriod)},
		{Name: "CONDUIT_PROXY_WAIT_FOR_APP_EXIT", Value: b.get(AnnotationWaitForAppExit, b.podGracePeriod())},
	}
	// Without a CPU limit the Go runtime would size itself to the node's
	// cores; a sidecar forwards on one core unless given a limit (the runtime
	// then follows the limit). One P also spares the thread wake-ups of
	// goroutine hand-offs: about 15 % less CPU per request (docs/proxy.md).
	if _, limited := res.Limits[corev1.ResourceCPU]; !limited {
		env = append(env, corev1.EnvVar{Name: "GOMAXPROCS", Value: "1"})
	}
	if v, ok := b.ann[AnnotationAccessLog]; ok {
		env = append(env, corev1.EnvVar{Name: "CONDUIT_PROXY_ACCESS_LOG", Value: v})
	}
	// The proxy's own defaults apply unless the workload or conduit-config asks.
	if v := b.get(AnnotationDiscoveryIdleTimeout, p.Discovery.IdleTimeout); v != "" {
		env = append(env, corev1.EnvVar{Name: "CONDUIT_PROXY_DISCOVERY_IDLE_TIMEOUT", Value: v})
	}
	if v := b.get(AnnotationDiscoveryLastKnownMaxAge, p.Discovery.LastKnownMaxAge); v != "" {
		env = append(env, corev1.EnvVar{Name: "CONDUIT_PROXY_DISCOVERY_LAST_KNOWN_MAX_AGE", Value: v})
	}
	if v := p.ClusterNetworks; v != "" {
		env = append(env, corev1.EnvVar{Name: "CONDUIT_PROXY_CLUSTER_NETWORKS", Value: v})
	}
	// The proxy's own default (h2) applies unless the workload asks.
	if v, ok := b.ann[AnnotationProxyHTTP1Transport]; ok {
		env = append(env, corev1.EnvVar{Name: "CONDUIT_PROXY_HTTP1_MESHED_TRANSPORT", Value: v})
	}
	if v := b.ipv6(); v != proxyconfig.IPv6Auto {
		env = append(env, corev1.EnvVar{Name: "CONDUIT_PROXY_IPV6", Value: v})
	}
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(p.AdminPort)}},
			PeriodSeconds:    period,
			FailureThreshold: failures,
			TimeoutSeconds:   1,
		}
	}
	c := corev1.Container{
		Name:            ProxyContainerName,
		Image:           b.get(AnnotationProxyImage, p.Image) + ":" + b.version(),
		ImagePullPolicy: corev1.PullPolicy(p.ImagePullPolicy),
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: "conduit-proxy", ContainerPort: p.InboundPort, Protocol: corev1.ProtocolTCP},
			{Name: "conduit-admin", ContainerPort: p.AdminPort, Protocol: corev1.ProtocolTCP},
		},
		Resources:      res,
		StartupProbe:   probe("/ready", 1, 120),
		ReadinessProbe: probe("/ready", 10, 3),
		LivenessProbe:  probe("/live", 10, 3),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(p.UID),
			RunAsGroup:               ptr(p.UID),
			RunAsNonRoot:             ptr(true),
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		VolumeMounts:             []corev1.VolumeMount{{Name: TokenVolumeName, MountPath: TokenMountPath, ReadOnly: true}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if native {
		c.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
	} else {
		// A regular container: the kubelet starts containers in order and
		// waits for each postStart hook, so the application starts once the
		// proxy is ready. The startup probe only delays readiness here.
		c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: p.AwaitCommand}}}
	}
	return c, nil
}

// podGracePeriod is the pod's terminationGracePeriodSeconds as a duration
// (the API server's default, 30 s, when unset): by default the proxy serves
// for as long as the kubelet lets the application stop.
func (b *builder) podGracePeriod() string {
	s := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if g := b.pod.Spec.TerminationGracePeriodSeconds; g != nil && *g >= 0 {
		s = *g
	}
	return (time.Duration(s) * time.Second).String()
}

func (b *builder) proxyInitContainer() (corev1.Container, error) {
	cfg := b.cfg
	p := cfg.Proxy
	join := func(parts ...string) string {
		var out []string
		for _, s := range parts {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return strings.Join(out, ",")
	}
	inboundSkip := join(cfg.ProxyInit.SkipInboundPorts, b.ports(AnnotationSkipInboundPorts, ""))
	if ranges, _ := ports.Parse(inboundSkip, nil); ports.Contains(ranges, uint16(p.InboundPort)) {
		return corev1.Container{}, &Denial{Message: fmt.Sprintf("conduit injector: annotation %s=%q skips the proxy's own inbound port %d; accepted: ports other than %d",
			AnnotationSkipInboundPorts, b.ann[AnnotationSkipInboundPorts], p.InboundPort, p.InboundPort)}
	}
	args := []string{
		"--incoming-proxy-port=" + strconv.Itoa(int(p.InboundPort)),
		"--outgoing-proxy-port=" + strconv.Itoa(int(p.OutboundPort)),
		"--proxy-uid=" + strconv.FormatInt(p.UID, 10),
		"--iptables-mode=" + cfg.ProxyInit.IPTablesMode,
		"--inbound-ports-to-ignore=" + join(strconv.Itoa(int(p.AdminPort)), "4190", inboundSkip),
	}
	if v := join(cfg.ProxyInit.SkipOutboundPorts, b.ann[AnnotationSkipOutboundPorts]); v != "" {
		args = append(args, "--outbound-ports-to-ignore="+v)
	}
	if v := join(cfg.ProxyInit.SkipSubnets, b.ann[AnnotationSkipSubnets]); v != "" {
		args = append(args, "--subnets-to-ignore="+v)
	}
	if v := b.ipv6(); v != proxyconfig.IPv6Auto {
		args = append(args, "--ipv6="+v)
	}
	res, err := cfg.ProxyInit.Resources.requirements()
	if err != nil {
		return corev1.Container{}, err
	}
	return corev1.Container{
		Name:            ProxyInitContainerName,
		Image:           cfg.ProxyInit.Image + ":" + cfg.Version,
		ImagePullPolicy: corev1.PullPolicy(p.ImagePullPolicy),
		Args:            args,
		Resources:       res,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			Privileged:               ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		// iptables takes its lock in /run/xtables.lock.
		VolumeMounts:             []corev1.VolumeMount{{Name: XtablesVolumeName, MountPath: "/run"}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}, nil
}

func (b *builder) volumes() []corev1.Volume {
	return []corev1.Volume{
		{Name: TokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience:          b.cfg.Identity.TokenAudience,
				ExpirationSeconds: ptr(b.cfg.Identity.TokenExpirationSeconds),
				Path:              "token",
			}}},
		}}},
		{Name: XtablesVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("1Mi"))}}},
	}
}

// patch builds the JSON patch: proxy-init first among the init containers,
// then (native) the proxy, so that the application's own init containers
// already run behind a ready proxy; or (fallback) the proxy first among the
// containers.
func (b *builder) patch(initC, proxy corev1.Container, native bool) []JSONPatchOp {
	var ops []JSONPatchOp
	spec := b.pod.Spec
	if len(spec.InitContainers) == 0 {
		inits := []corev1.Container{initC}
		if native {
			inits = append(inits, proxy)
		}
		ops = append(ops, JSONPatchOp{Op: "add", Path: "/spec/initContainers", Value: inits})
	} else {
		ops = append(ops, JSONPatchOp{Op: "add", Path: "/spec/initContainers/0", Value: initC})
		if native {
			ops = append(ops, JSONPatchOp{Op: "add", Path: "/spec/initContainers/1", Value: proxy})
		}
	}
	if !native {
		ops = append(ops, JSONPatchOp{Op: "add", Path: "/spec/containers/0", Value: proxy})
	}
	if len(spec.Volumes) == 0 {
		ops = append(ops, JSONPatchOp{Op: "add", Path: "/spec/volumes", Value: b.volumes()})
	} else {
		for _, v := range b.volumes() {
			ops = append(ops, JSONPatchOp{Op: "add", Path: "/spec/volumes/-", Value: v})
		}
	}
	ops = append(ops, mapOps("/metadata/labels", b.pod.Labels, map[string]string{
		LabelProxyVersion:   b.version(),
		LabelControlPlaneNS: b.cpns,
	})...)
	ann := map[string]string{
		AnnotationInjectStatus: StatusInjected,
		AnnotationIdentityMode: "default",
	}
	// The destination service reads these from the pod, to tell the client
	// proxies that a port is opaque, or skips the proxy: a value the pod
	// has from its namespace goes on the pod.
	for _, a := range []string{AnnotationOpaquePorts, AnnotationSkipInboundPorts} {
		if _, own := b.pod.Annotations[a]; !own {
			if v, ok := b.ann[a]; ok {
				ann[a] = v
			}
		}
	}
	// A regular proxy container comes first, where kubectl (logs, exec,
	// attach) looks when no container is named: point it at the
	// application's, unless the pod chose.
	if _, own := b.pod.Annotations[AnnotationKubectlDefaultContainer]; !own && !native && len(spec.Containers) > 0 {
		ann[AnnotationKubectlDefaultContainer] = spec.Containers[0].Name
	}
	ops = append(ops, mapOps("/metadata/annotations", b.pod.Annotations, ann)...)
	return ops
}

// mapOps sets keys of the map at path, creating it when absent.
func mapOps(path string, current, set map[string]string) []JSONPatchOp {
	if current == nil {
		return []JSONPatchOp{{Op: "add", Path: path, Value: set}}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ops := make([]JSONPatchOp, 0, len(keys))
	for _, k := range keys {
		op := "add"
		if _, ok := current[k]; ok {
			op = "replace"
		}
		ops = append(ops, JSONPatchOp{Op: op, Path: path + "/" + escapePointer(k), Value: set[k]})
	}
	return ops
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func ptr[T any](v T) *T { return &v }
