package injector

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func goldenFile(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (go test -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func testConfig(t testing.TB) Config {
	pem, err := os.ReadFile("testdata/trust-anchors.pem")
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig("conduit")
	c.Version = "v0.1.0"
	c.Identity.TrustAnchorsPEM = string(pem)
	return c
}

func newTestInjector(t testing.TB, native bool) *Injector {
	c := testConfig(t)
	return &Injector{ControlPlaneNamespace: "conduit", Config: func() Config { return c }, NativeSidecar: native}
}

// pod returns a minimal Deployment-made pod, modified by opts.
func pod(opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-7d4b9c-",
			Namespace:    "emojivoto",
			Labels:       map[string]string{"app": "web"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c", UID: "rs-uid",
				Controller: ptr(true)}},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web",
			Containers:         []corev1.Container{{Name: "web", Image: "example/web:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func podAnn(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		for i := 0; i < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func ann(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

var nsEnabled = ann(AnnotationInject, InjectEnabled)

type injectCase struct {
	name   string
	ns     string
	nsAnn  map[string]string
	pod    *corev1.Pod
	native bool
	cfg    func(*Config)
}

func injectCases() []injectCase {
	cases := []injectCase{
		{name: "namespace-enabled", nsAnn: nsEnabled, pod: pod(), native: true},
		{name: "namespace-enabled-regular-sidecar", nsAnn: nsEnabled, pod: pod(), native: false},
		{name: "pod-enabled-existing-init-volumes", pod: pod(podAnn(AnnotationInject, InjectEnabled, "team", "a"), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "example/migrate:1"}}
			p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.ServiceAccountName = ""
		}), native: true},
		{name: "pod-enabled-no-labels", pod: pod(podAnn(AnnotationInject, InjectEnabled), func(p *corev1.Pod) { p.Labels = nil }), native: true},
		{name: "pod-disabled-overrides-namespace", nsAnn: nsEnabled, pod: pod(podAnn(AnnotationInject, InjectDisabled)), native: true},
		{name: "no-annotation", pod: pod(), native: true},
		{name: "kube-system", ns: "kube-system", nsAnn: nsEnabled, pod: pod(podAnn(AnnotationInject, InjectEnabled)), native: true},
		{name: "control-plane-namespace", ns: "conduit", pod: pod(podAnn(AnnotationInject, InjectEnabled)), native: true},
		{name: "already-injected-annotation", nsAnn: nsEnabled, pod: pod(podAnn(AnnotationInjectStatus, StatusInjected)), native: true},
		{name: "already-injected-container", nsAnn: nsEnabled, pod: pod(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: ProxyContainerName, Image: "x"}}
		}), native: true},
		{name: "host-network", nsAnn: nsEnabled, pod: pod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), native: true},
		{name: "inject-invalid-on-pod", nsAnn: nsEnabled, pod: pod(podAnn(AnnotationInject, "true")), native: true},
		{name: "inject-invalid-on-namespace", nsAnn: ann(AnnotationInject, "yes"), pod: pod(), native: true},
		{name: "no-trust-anchors", nsAnn: nsEnabled, pod: pod(), native: true, cfg: func(c *Config) { c.Identity.TrustAnchorsPEM = "" }},
		{name: "annotations-valid-pod-wins", native: true,
			nsAnn: ann(AnnotationInject, InjectEnabled, AnnotationProxyLogLevel, "debug", AnnotationSkipOutboundPorts, "5432", AnnotationProxyCPURequest, "1"),
			pod: pod(podAnn(
				AnnotationOpaquePorts, "3306,9000-9010",
				AnnotationSkipInboundPorts, "22,8000-8100",
				AnnotationSkipOutboundPorts, "443",
				AnnotationSkipSubnets, "10.0.0.0/8,169.254.169.254",
				AnnotationProxyCPURequest, "200m",
				AnnotationProxyMemoryRequest, "64Mi",
				AnnotationProxyCPULimit, "1",
				AnnotationProxyMemoryLimit, "512Mi",
				AnnotationProxyImage, "registry.example.com:5000/mesh/proxy",
				AnnotationProxyVersion, "v0.2.0-rc.1",
				AnnotationShutdownGracePeriod, "2m",
				AnnotationProxyHTTP1Transport, "http1",
				AnnotationWaitForAppExit, "0s",
				AnnotationAccessLog, "json",
				AnnotationDiscoveryIdleTimeout, "30s",
				AnnotationDiscoveryLastKnownMaxAge, "0s",
			))},
		// A namespace's port lists go on the pod too, where the destination
		// service reads them; written loosely, they still parse.
		{name: "port-lists-from-namespace", native: true,
			nsAnn: ann(AnnotationInject, InjectEnabled, AnnotationOpaquePorts, " 3306, 7100,", AnnotationSkipInboundPorts, "22 ,"),
			pod:   pod()},
		// On a pod, the names of its containers' ports are resolved for the
		// proxy and proxy-init; its own annotations stay as they are.
		{name: "port-lists-named-on-pod", nsAnn: nsEnabled, native: true,
			pod: pod(podAnn(AnnotationOpaquePorts, "greeting, 25", AnnotationSkipInboundPorts, "debug"), func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports,
					corev1.ContainerPort{Name: "greeting", ContainerPort: 7200}, corev1.ContainerPort{Name: "debug", ContainerPort: 9229})
			})},
		// A namespace's list names no port: its pods differ.
		{name: "port-names-on-namespace", native: true, nsAnn: ann(AnnotationInject, InjectEnabled, AnnotationOpaquePorts, "greeting"),
			pod: pod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "greeting", ContainerPort: 7200})
			})},
		{name: "sidecar-mode-regular-on-native", nsAnn: nsEnabled, native: true, pod: pod(podAnn(AnnotationSidecarMode, "regular"))},
		{name: "sidecar-mode-native-on-regular", nsAnn: nsEnabled, native: false, pod: pod(podAnn(AnnotationSidecarMode, "native"))},
		{name: "sidecar-mode-native-on-native", nsAnn: nsEnabled, native: true, pod: pod(podAnn(AnnotationSidecarMode, "native"))},
		{name: "app-runs-as-proxy-uid", nsAnn: nsEnabled, native: true, pod: pod(func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(2102))}
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "other", Image: "other",
				SecurityContext: &corev1.SecurityContext{RunAsUser: ptr(int64(1000))}})
		})},
		{name: "wait-for-app-exit-from-pod-grace-period", nsAnn: nsEnabled, native: false,
			pod: pod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(120)) })},
		{name: "request-above-limit", nsAnn: nsEnabled, pod: pod(podAnn(AnnotationProxyMemoryRequest, "1Gi", AnnotationProxyMemoryLimit, "512Mi")), native: true},
		{name: "skip-inbound-proxy-port", nsAnn: nsEnabled, pod: pod(podAnn(AnnotationSkipInboundPorts, "4100-4200")), native: true},
		// An application port that the proxy binds: one of them would fail
		// to start (crash loop); the pod is refused with a message instead.
		{name: "app-port-is-proxy-port", nsAnn: nsEnabled, native: true, pod: pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: 4191})
		})},
		// A UDP port does not collide with the proxy's TCP listeners.
		{name: "app-udp-port-is-proxy-port", nsAnn: nsEnabled, native: true, pod: pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 4143, Protocol: corev1.ProtocolUDP}}
		})},
		// A valid image tag that is not a valid label value (the tag is also
		// the conduit.dev/proxy-version label): the API server would reject
		// the injected pod with a message that does not name the annotation.
		{name: "proxy-version-not-a-label-value", nsAnn: nsEnabled, native: true,
			pod: pod(podAnn(AnnotationProxyVersion, "sha256-9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"))},
		// `mesh inject --manual` renders manifests as written: an old one may
		// name the ServiceAccount with the deprecated field only (the API server
		// copies it to serviceAccountName; offline nothing does). The identity
		// must be that account's: its token is.
		{name: "deprecated-service-account-field", nsAnn: nsEnabled, native: true, pod: pod(func(p *corev1.Pod) {
			p.Spec.ServiceAccountName, p.Spec.DeprecatedServiceAccount = "", "legacy"
		})},
		// A ServiceAccount name is a DNS subdomain of up to 253 characters; the
		// identity name it is part of must stay a DNS name the proxy accepts.
		{name: "identity-name-too-long", nsAnn: nsEnabled, native: true, pod: pod(func(p *corev1.Pod) {
			p.Spec.ServiceAccountName = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 40)
		})},
		// The pod's own choice of kubectl's default container is kept.
		{name: "regular-sidecar-default-container-kept", nsAnn: nsEnabled, native: false, pod: pod(
			podAnn(AnnotationKubectlDefaultContainer, "web"), func(p *corev1.Pod) {
				p.Spec.Containers = append([]corev1.Container{{Name: "setup-helper", Image: "x"}}, p.Spec.Containers...)
			})},
		// config.conduit.dev/ipv6 reaches proxy-init (--ipv6) and the proxy
		// (CONDUIT_PROXY_IPV6) alike; auto, the default of both, adds neither,
		// so that the pods of a cluster that never chose stay as they were.
		{name: "ipv6-on", nsAnn: nsEnabled, native: true, pod: pod(podAnn(AnnotationIPv6, "on"))},
		{name: "ipv6-off-regular-sidecar", nsAnn: nsEnabled, native: false, pod: pod(podAnn(AnnotationIPv6, "off"))},
		{name: "ipv6-from-namespace", native: true, nsAnn: ann(AnnotationInject, InjectEnabled, AnnotationIPv6, "off"), pod: pod()},
		{name: "ipv6-auto-on-pod-overrides-namespace", native: true, nsAnn: ann(AnnotationInject, InjectEnabled, AnnotationIPv6, "off"),
			pod: pod(podAnn(AnnotationIPv6, "auto"))},
		{name: "ipv6-invalid-on-namespace", native: true, nsAnn: ann(AnnotationInject, InjectEnabled, AnnotationIPv6, "dual"), pod: pod()},
		{name: "ipv6-from-configmap", nsAnn: nsEnabled, native: true, pod: pod(), cfg: func(c *Config) { c.Proxy.IPv6 = "off" }},
		// A Config that neither ParseConfig nor DefaultConfig filled: no mode is auto.
		{name: "ipv6-unset-in-config", nsAnn: nsEnabled, native: true, pod: pod(), cfg: func(c *Config) { c.Proxy.IPv6 = "" }},
		{name: "ipv6-auto-on-pod-overrides-configmap", nsAnn: nsEnabled, native: true, pod: pod(podAnn(AnnotationIPv6, "auto")),
			cfg: func(c *Config) { c.Proxy.IPv6 = "on" }},
		// conduit-config's discovery settings (Helm values proxy.discovery.*)
		// reach every pod; a pod's annotation wins, and an invalid one falls
		// back to conduit-config's value, not the proxy's default.
		{name: "discovery-from-configmap", nsAnn: nsEnabled, pod: pod(), native: true, cfg: func(c *Config) {
			c.Proxy.Discovery = ProxyDiscoveryConfig{IdleTimeout: "10s", LastKnownMaxAge: "2h"}
		}},
		{name: "cluster-networks-from-configmap", nsAnn: nsEnabled, pod: pod(), native: true, cfg: func(c *Config) {
			c.Proxy.ClusterNetworks = "10.0.0.0/8,100.64.0.0/10,2001:db8:42::/48"
		}},
		{name: "discovery-pod-overrides-configmap", nsAnn: nsEnabled, native: true,
			pod: pod(podAnn(AnnotationDiscoveryLastKnownMaxAge, "0s", AnnotationDiscoveryIdleTimeout, "0s")),
			cfg: func(c *Config) { c.Proxy.Discovery = ProxyDiscoveryConfig{IdleTimeout: "10s", LastKnownMaxAge: "2h"} }},
		{name: "config-defaults-from-configmap", nsAnn: nsEnabled, pod: pod(), native: true, cfg: func(c *Config) {
			c.ProxyInit.SkipOutboundPorts = "25"
			c.ProxyInit.SkipSubnets = "192.168.0.0/16"
			c.ProxyInit.IPTablesMode = "nft"
			c.Proxy.Resources.MemoryLimit = ""
		}},
	}
	invalid := map[string]string{
		AnnotationOpaquePorts:              "mysql",
		AnnotationSkipInboundPorts:         "0",
		AnnotationSkipOutboundPorts:        "443-80",
		AnnotationSkipSubnets:              "10.0.0.0/33",
		AnnotationProxyCPURequest:          "lots",
		AnnotationProxyMemoryRequest:       "-1Mi",
		AnnotationProxyCPULimit:            "1 core",
		AnnotationProxyMemoryLimit:         "big",
		AnnotationProxyLogLevel:            "verbose",
		AnnotationProxyImage:               "Example/Proxy:v1",
		AnnotationProxyVersion:             "v1 beta",
		AnnotationShutdownGracePeriod:      "30",
		AnnotationProxyHTTP1Transport:      "h3",
		AnnotationWaitForAppExit:           "-5s",
		AnnotationAccessLog:                "apache",
		AnnotationDiscoveryIdleTimeout:     "0s",
		AnnotationDiscoveryLastKnownMaxAge: "1 hour",
		AnnotationSidecarMode:              "sidecar",
		// proxy-init would take it, the proxy would not: refused rather
		// than a crash loop.
		AnnotationIPv6: "ON",
	}
	for _, s := range Settings {
		cases = append(cases, injectCase{
			name: "invalid-" + strings.TrimPrefix(s.Name, configPrefix), nsAnn: nsEnabled, native: true,
			pod: pod(podAnn(s.Name, invalid[s.Name])),
		})
	}
	return cases
}

// outcome is what the golden files record.
type outcome struct {
	Injected bool          `json:"injected"`
	Reason   string        `json:"reason,omitempty"`
	Denied   string        `json:"denied,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	Patch    []JSONPatchOp `json:"patch,omitempty"`
}

func run(t *testing.T, tc injectCase) (*Result, error) {
	t.Helper()
	inj := newTestInjector(t, tc.native)
	if tc.cfg != nil {
		c := inj.Config()
		tc.cfg(&c)
		inj.Config = func() Config { return c }
	}
	ns := tc.ns
	if ns == "" {
		ns = "emojivoto"
	}
	return inj.Inject(context.Background(), Request{Pod: tc.pod, Namespace: ns, NamespaceAnnotations: tc.nsAnn})
}

func TestInjectGolden(t *testing.T) {
	for _, tc := range injectCases() {
		t.Run(tc.name, func(t *testing.T) {
			res, err := run(t, tc)
			var o outcome
			var d *Denial
			switch {
			case errors.As(err, &d):
				o.Denied = d.Message
			case err != nil:
				t.Fatal(err)
			default:
				o = outcome{Injected: res.Injected, Reason: res.Reason, Warnings: res.Warnings, Patch: res.Patch}
			}
			out, err := yaml.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			goldenFile(t, "inject/"+tc.name+".yaml", out)
		})
	}
}

// TestInjectedPodInvariants applies every patch and checks what must hold
// for any injected pod, independently of the golden files.
func TestInjectedPodInvariants(t *testing.T) {
	for _, tc := range injectCases() {
		res, err := run(t, tc)
		if err != nil || !res.Injected {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			p, err := ApplyPatch(tc.pod, res.Patch)
			if err != nil {
				t.Fatal(err)
			}
			// The pod's sidecar-mode annotation may ask for a regular container.
			native := tc.native && tc.pod.Annotations[AnnotationSidecarMode] != "regular"
			var proxy, init *corev1.Container
			if native {
				if len(p.Spec.InitContainers) < 2 || p.Spec.InitContainers[0].Name != ProxyInitContainerName || p.Spec.InitContainers[1].Name != ProxyContainerName {
					t.Fatalf("init containers must start with %s, %s: %v", ProxyInitContainerName, ProxyContainerName, names(p.Spec.InitContainers))
				}
				proxy = &p.Spec.InitContainers[1]
				if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
					t.Error("native sidecar without restartPolicy Always")
				}
			} else {
				if p.Spec.InitContainers[0].Name != ProxyInitContainerName || p.Spec.Containers[0].Name != ProxyContainerName {
					t.Fatalf("want %s first init container and %s first container", ProxyInitContainerName, ProxyContainerName)
				}
				proxy = &p.Spec.Containers[0]
				if proxy.Lifecycle == nil || proxy.Lifecycle.PostStart == nil {
					t.Error("regular sidecar without a postStart hook")
				}
				// kubectl logs/exec/attach pick the first container unless told:
				// the proxy, where the application's used to be.
				want := tc.pod.Spec.Containers[0].Name
				if own, ok := tc.pod.Annotations[AnnotationKubectlDefaultContainer]; ok {
					want = own
				}
				if got := p.Annotations[AnnotationKubectlDefaultContainer]; got != want {
					t.Errorf("annotation %s=%q, want the application's first container %q", AnnotationKubectlDefaultContainer, got, want)
				}
			}
			init = &p.Spec.InitContainers[0]
			if len(p.Spec.Containers) != len(tc.pod.Spec.Containers)+map[bool]int{true: 0, false: 1}[native] {
				t.Error("application containers changed")
			}
			sc := proxy.SecurityContext
			if *sc.RunAsUser != 2102 || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Add) != 0 {
				t.Errorf("proxy security context too permissive: %+v", sc)
			}
			isc := init.SecurityContext
			if *isc.RunAsUser != 0 || !*isc.ReadOnlyRootFilesystem || strings.Join(capNames(isc.Capabilities.Add), ",") != "NET_ADMIN,NET_RAW" || capNames(isc.Capabilities.Drop)[0] != "ALL" {
				t.Errorf("proxy-init security context: %+v", isc)
			}
			env := map[string]string{}
			for _, e := range proxy.Env {
				env[e.Name] = e.Value
			}
			sa := tc.pod.Spec.ServiceAccountName
			if sa == "" {
				sa = tc.pod.Spec.DeprecatedServiceAccount
			}
			if sa == "" {
				sa = "default"
			}
			if err := pki.CheckDNSName(env["CONDUIT_PROXY_IDENTITY_NAME"]); err != nil {
				t.Errorf("identity name the proxy refuses: %v", err)
			}
			if want := sa + ".emojivoto.serviceaccount.identity.conduit.cluster.local"; env["CONDUIT_PROXY_IDENTITY_NAME"] != want {
				t.Errorf("identity name %q, want %q", env["CONDUIT_PROXY_IDENTITY_NAME"], want)
			}
			if !strings.Contains(env["CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS"], "BEGIN CERTIFICATE") {
				t.Error("no trust anchors")
			}
			if p.Labels[LabelControlPlaneNS] != "conduit" || p.Labels[LabelProxyVersion] == "" || p.Annotations[AnnotationInjectStatus] != StatusInjected {
				t.Errorf("labels/annotations: %v %v", p.Labels, p.Annotations)
			}
			for k, v := range tc.pod.Labels {
				if p.Labels[k] != v {
					t.Errorf("label %s lost", k)
				}
			}
			// What the API server's validation would refuse.
			for k, v := range p.Labels {
				if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
					t.Errorf("label %s=%q: %v", k, v, errs)
				}
			}
			var token bool
			for _, v := range p.Spec.Volumes {
				if v.Name == TokenVolumeName {
					s := v.Projected.Sources[0].ServiceAccountToken
					token = s.Audience == "identity.conduit.dev" && *s.ExpirationSeconds == 86400 && s.Path == "token"
				}
			}
			if !token {
				t.Error("projected token volume missing or wrong")
			}
			// proxy-init and the proxy get the same IPv6 mode: the pod's
			// annotation, else its namespace's, else conduit-config's; auto
			// (the default of both) is not written.
			cfg := testConfig(t)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			mode := cfg.Proxy.IPv6
			if v, ok := tc.nsAnn[AnnotationIPv6]; ok {
				mode = v
			}
			if v, ok := tc.pod.Annotations[AnnotationIPv6]; ok {
				mode = v
			}
			if mode == "auto" {
				mode = ""
			}
			var initMode string
			for _, a := range init.Args {
				if v, ok := strings.CutPrefix(a, "--ipv6="); ok {
					initMode = v
				}
			}
			if envMode := env["CONDUIT_PROXY_IPV6"]; initMode != mode || envMode != mode {
				t.Errorf("IPv6 mode: proxy-init --ipv6=%q, proxy CONDUIT_PROXY_IPV6=%q, want both %q (empty: not set)", initMode, envMode, mode)
			}
			// Injecting the result again changes nothing.
			again, err := newTestInjector(t, tc.native).Inject(context.Background(), Request{Pod: p, Namespace: "emojivoto", NamespaceAnnotations: nsEnabled})
			if err != nil || again.Injected {
				t.Errorf("second injection: %v, %+v", err, again)
			}
		})
	}
}

// TestInvalidAnnotationOutcomes checks that each annotation's documented
// outcome is what happens.
func TestInvalidAnnotationOutcomes(t *testing.T) {
	for _, tc := range injectCases() {
		if !strings.HasPrefix(tc.name, "invalid-") {
			continue
		}
		name := configPrefix + strings.TrimPrefix(tc.name, "invalid-")
		var s setting
		for _, x := range Settings {
			if x.Name == name {
				s = x
			}
		}
		res, err := run(t, tc)
		var d *Denial
		switch s.Outcome {
		case Refuse:
			if !errors.As(err, &d) || !strings.Contains(d.Message, name) || !strings.Contains(d.Message, "accepted:") {
				t.Errorf("%s: want a refusal naming it and the accepted values, got %v", name, err)
			}
		case Default:
			if err != nil || !res.Injected || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], name) {
				t.Errorf("%s: want injection with one warning, got %v %+v", name, err, res)
			}
		}
	}
}

type addEnv struct{}

func (addEnv) Contribute(_ context.Context, req *ContributionRequest) ([]JSONPatchOp, error) {
	return []JSONPatchOp{{Op: "add", Path: req.ProxyPath + "/env/-", Value: corev1.EnvVar{Name: "CONDUIT_PROXY_TAP_ENABLED", Value: "true"}}}, nil
}

type failing struct{}

func (failing) Contribute(context.Context, *ContributionRequest) ([]JSONPatchOp, error) {
	return nil, errors.New("boom")
}

// badPath returns an operation that does not apply.
type badPath struct{}

func (badPath) Contribute(context.Context, *ContributionRequest) ([]JSONPatchOp, error) {
	return []JSONPatchOp{{Op: "replace", Path: "/spec/nope/3", Value: 1}}, nil
}

// required fails with ErrContributionRequired (an extension whose failure
// policy is Fail).
type required struct{}

func (required) Contribute(context.Context, *ContributionRequest) ([]JSONPatchOp, error) {
	return nil, fmt.Errorf("%w: extension tracing: tracing is down", ErrContributionRequired)
}

// slow ignores nothing: it waits for its deadline.
type slow struct{}

func (slow) Contribute(ctx context.Context, _ *ContributionRequest) ([]JSONPatchOp, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestContributors(t *testing.T) {
	p := pod()
	// The contribution reaches the proxy wherever the pod has it: a native
	// sidecar, a regular container, a regular one the pod asked for.
	for _, tc := range []struct {
		injectorNative bool
		podMode        string // config.conduit.dev/sidecar-mode
		native         bool
	}{{true, "", true}, {false, "", false}, {true, "regular", false}} {
		native := tc.native
		pp := p
		if tc.podMode != "" {
			pp = pod(podAnn(AnnotationSidecarMode, tc.podMode))
		}
		inj := newTestInjector(t, tc.injectorNative)
		// The broken ones are left out with a warning; the good one still applies.
		inj.Contributors = []PatchContributor{failing{}, addEnv{}, badPath{}}
		res, err := inj.Inject(context.Background(), Request{Pod: pp, Namespace: "emojivoto", NamespaceAnnotations: nsEnabled})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Warnings) != 2 || !strings.Contains(res.Warnings[0], "boom") || !strings.Contains(res.Warnings[1], "badPath") {
			t.Errorf("warnings: %q", res.Warnings)
		}
		patched, err := ApplyPatch(pp, res.Patch)
		if err != nil {
			t.Fatal(err)
		}
		var proxy corev1.Container
		if native {
			proxy = patched.Spec.InitContainers[1]
		} else {
			proxy = patched.Spec.Containers[0]
		}
		if last := proxy.Env[len(proxy.Env)-1]; proxy.Name != ProxyContainerName || last.Name != "CONDUIT_PROXY_TAP_ENABLED" {
			t.Errorf("native=%v: contribution not applied to the proxy: %s %v", native, proxy.Name, last)
		}
	}
	inj := newTestInjector(t, true)
	inj.Contributors = []PatchContributor{slow{}}
	start := time.Now()
	res, err := inj.Inject(context.Background(), Request{Pod: p, Namespace: "emojivoto", NamespaceAnnotations: nsEnabled})
	if err != nil || !res.Injected || len(res.Warnings) != 1 || time.Since(start) > ContributorTimeout+time.Second {
		t.Errorf("slow contributor: %v %+v after %s", err, res, time.Since(start))
	}
	// A contributor that requires its patch refuses the pod when it fails.
	inj.Contributors = []PatchContributor{addEnv{}, required{}}
	_, err = inj.Inject(context.Background(), Request{Pod: p, Namespace: "emojivoto", NamespaceAnnotations: nsEnabled})
	var d *Denial
	if !errors.As(err, &d) || !strings.Contains(d.Message, "tracing is down") || !strings.Contains(d.Message, ErrContributionRequired.Error()) {
		t.Errorf("required contributor failing: %v; want a Denial with its error", err)
	}
	// Pods that are not injected are not offered to contributors.
	if res, err := inj.Inject(context.Background(), Request{Pod: p, Namespace: "emojivoto"}); err != nil || res.Injected {
		t.Errorf("got %v %+v", err, res)
	}
}

func TestSupportsNativeSidecars(t *testing.T) {
	for _, tc := range []struct {
		major, minor string
		want         bool
	}{{"1", "28", false}, {"1", "29", true}, {"1", "32+", true}, {"2", "0", true}, {"1", "x", false}} {
		if got := SupportsNativeSidecars(tc.major, tc.minor); got != tc.want {
			t.Errorf("%s.%s: %v", tc.major, tc.minor, got)
		}
	}
}

func names(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

func capNames(cs []corev1.Capability) []string {
	var n []string
	for _, c := range cs {
		n = append(n, string(c))
	}
	return n
}

func TestRender(t *testing.T) {
	inj := newTestInjector(t, true)
	p, res, err := inj.Render(context.Background(), Request{Pod: pod(), Namespace: "emojivoto", NamespaceAnnotations: nsEnabled})
	if err != nil || p == nil || !res.Injected || p.Spec.InitContainers[1].Name != ProxyContainerName {
		t.Fatalf("Render: %v %+v", err, res)
	}
	p, res, err = inj.Render(context.Background(), Request{Pod: pod(), Namespace: "emojivoto"})
	if err != nil || p != nil || res.Injected || res.Reason == "" {
		t.Errorf("Render of a pod without the annotation: %v %v %+v", p, err, res)
	}
}

// TestProxyPortCollisions: a container that declares a TCP port the proxy
// listens on (inbound, outbound, admin) is refused, naming the container and
// the port, when it runs at the same time as the proxy: every container, and
// the init containers that run once the proxy is up (all of them with a
// native sidecar, the sidecars among them otherwise).
func TestProxyPortCollisions(t *testing.T) {
	always := ptr(corev1.ContainerRestartPolicyAlways)
	for _, tc := range []struct {
		name    string
		native  bool
		mutate  func(*corev1.Pod)
		refused string // a container name the refusal names; "" when injected
	}{
		{"inbound port in a container", true, func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 4143}}
		}, `"web"`},
		{"outbound port in a container, regular sidecar", false, func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 4140, Protocol: corev1.ProtocolTCP}}
		}, `"web"`},
		{"admin port in an init container, native", true, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "warm", Image: "x", Ports: []corev1.ContainerPort{{ContainerPort: 4191}}}}
		}, `"warm"`},
		{"admin port in an init container, regular: it ends before the proxy starts", false, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "warm", Image: "x", Ports: []corev1.ContainerPort{{ContainerPort: 4191}}}}
		}, ""},
		{"admin port in a sidecar init container, regular", false, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "logs", Image: "x", RestartPolicy: always, Ports: []corev1.ContainerPort{{ContainerPort: 4191}}}}
		}, `"logs"`},
		{"other ports", true, func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 4142}, {ContainerPort: 4192}, {ContainerPort: 4140, Protocol: corev1.ProtocolUDP}}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := newTestInjector(t, tc.native).Inject(context.Background(),
				Request{Pod: pod(tc.mutate), Namespace: "emojivoto", NamespaceAnnotations: nsEnabled})
			var d *Denial
			if tc.refused == "" {
				if err != nil || !res.Injected {
					t.Fatalf("want injection, got %v %+v", err, res)
				}
				return
			}
			if !errors.As(err, &d) || !strings.Contains(d.Message, tc.refused) || !strings.Contains(d.Message, "accepted:") {
				t.Fatalf("want a refusal naming container %s and the accepted ports, got %v", tc.refused, err)
			}
		})
	}
}
