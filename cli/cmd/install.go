package cmd

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/charts"
	"github.com/conduit-mesh/conduit/cli/render"
	"github.com/conduit-mesh/conduit/core/injector"
	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/pkg/version"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Names of the objects install and upgrade read back.
const (
	configMapName    = "conduit-config"
	configInstallKey = "install"
	trustRootsName   = "conduit-identity-trust-roots"
	trustRootsKey    = "ca-bundle.crt"
	issuerSecretName = "conduit-identity-issuer"
	serviceProfileGV = "conduit.dev/v1alpha2"
)

// Validity of the identity material mesh install generates.
const (
	generatedAnchorValidity = 365 * 24 * time.Hour
	generatedIssuerValidity = 365 * 24 * time.Hour
)

// installFlags are the flags install and upgrade share. Named flags only
// count when given, so that upgrade applies them on top of the stored ones.
type installFlags struct {
	valuesFiles []string
	set         []string
	setString   []string

	trustAnchorsFile, issuerCertFile, issuerKeyFile string
	externalIssuer                                  bool
	trustDomain, clusterDomain                      string
	issuanceLifetime                                string

	registry, tag, pullPolicy            string
	proxyImage, proxyVersion             string
	proxyCPURequest, proxyCPULimit       string
	proxyMemoryRequest, proxyMemoryLimit string
	proxyLogLevel, controllerLogLevel    string
	defaultOpaquePorts                   string
	clusterNetworks                      string
	ha                                   bool

	ignoreCluster bool
}

func (f *installFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&f.valuesFiles, "values", "f", nil, "values file for the control-plane chart (repeatable; later files win)")
	fs.StringArrayVar(&f.set, "set", nil, "set a chart value: key=value, e.g. proxy.logLevel=debug (repeatable)")
	fs.StringArrayVar(&f.setString, "set-string", nil, "set a chart value as a string: key=value (repeatable)")
	fs.StringVar(&f.trustAnchorsFile, "identity-trust-anchors-file", "", "PEM bundle of the trust anchors (default: a generated one, valid 1 year)")
	fs.StringVar(&f.issuerCertFile, "identity-issuer-certificate-file", "", "PEM certificate (and chain) of the issuer, signed by a trust anchor")
	fs.StringVar(&f.issuerKeyFile, "identity-issuer-key-file", "", "PEM private key of the issuer")
	fs.BoolVar(&f.externalIssuer, "identity-external-issuer", false, "the issuer Secret conduit-identity-issuer is provided by cert-manager or you, not rendered (needs --identity-trust-anchors-file)")
	fs.StringVar(&f.trustDomain, "identity-trust-domain", "cluster.local", "trust domain of workload identities")
	fs.StringVar(&f.issuanceLifetime, "identity-issuance-lifetime", "24h0m0s", "lifetime of the workload certificates")
	fs.StringVar(&f.clusterDomain, "cluster-domain", "cluster.local", "DNS suffix of the cluster's Services")
	fs.StringVar(&f.registry, "registry", "ghcr.io/conduit-mesh", "registry of the Conduit images (<registry>/<name>:<tag>)")
	fs.StringVar(&f.tag, "tag", "", "tag of the Conduit images (default: this CLI's version)")
	fs.StringVar(&f.pullPolicy, "image-pull-policy", "IfNotPresent", "imagePullPolicy of every container: Always, IfNotPresent or Never")
	fs.StringVar(&f.proxyImage, "proxy-image", "proxy", "proxy image: a name under --registry, or a full repository")
	fs.StringVar(&f.proxyVersion, "proxy-version", "", "tag of the proxy image (default: --tag)")
	fs.StringVar(&f.proxyCPURequest, "proxy-cpu-request", "100m", "CPU request of every proxy")
	fs.StringVar(&f.proxyCPULimit, "proxy-cpu-limit", "", "CPU limit of every proxy (default: none)")
	fs.StringVar(&f.proxyMemoryRequest, "proxy-memory-request", "20Mi", "memory request of every proxy")
	fs.StringVar(&f.proxyMemoryLimit, "proxy-memory-limit", "250Mi", "memory limit of every proxy")
	fs.StringVar(&f.proxyLogLevel, "proxy-log-level", "info", "log level of the proxies: debug, info, warn or error")
	fs.StringVar(&f.controllerLogLevel, "controller-log-level", "info", "log level of the controllers: debug, info, warn or error")
	fs.StringVar(&f.defaultOpaquePorts, "default-opaque-ports", "25,587,3306,4444,5432,6379,9300,11211", "ports whose traffic is opaque TCP (server-speaks-first protocols)")
	fs.StringVar(&f.clusterNetworks, "cluster-networks", "", "CIDRs holding every pod and Service address (default: the proxy's, 10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fc00::/7); proxies look up only addresses inside them")
	fs.BoolVar(&f.ha, "ha", false, "high availability: 3 replicas of each controller, PodDisruptionBudgets and pod anti-affinity")
	fs.BoolVar(&f.ignoreCluster, "ignore-cluster", false, "render without looking at the cluster (no check for CRDs or an existing control plane)")
}

// flagValues maps the named flags the user gave to chart values.
func (f *installFlags) flagValues(fs *pflag.FlagSet, o *Options) map[string]any {
	vals := map[string]any{}
	put := func(flag, path string, v any) {
		if fs.Changed(flag) {
			setPath(vals, path, v)
		}
	}
	put("identity-external-issuer", "identity.externalIssuer", f.externalIssuer)
	put("identity-trust-domain", "identityTrustDomain", f.trustDomain)
	put("identity-issuance-lifetime", "identity.issuer.issuanceLifetime", f.issuanceLifetime)
	put("cluster-domain", "clusterDomain", f.clusterDomain)
	put("registry", "image.registry", f.registry)
	put("tag", "image.tag", f.tag)
	put("image-pull-policy", "image.pullPolicy", f.pullPolicy)
	put("proxy-image", "proxy.image.name", f.proxyImage)
	put("proxy-version", "proxy.image.version", f.proxyVersion)
	put("proxy-cpu-request", "proxy.resources.cpu.request", f.proxyCPURequest)
	put("proxy-cpu-limit", "proxy.resources.cpu.limit", f.proxyCPULimit)
	put("proxy-memory-request", "proxy.resources.memory.request", f.proxyMemoryRequest)
	put("proxy-memory-limit", "proxy.resources.memory.limit", f.proxyMemoryLimit)
	put("proxy-log-level", "proxy.logLevel", f.proxyLogLevel)
	put("controller-log-level", "controllerLogLevel", f.controllerLogLevel)
	put("default-opaque-ports", "proxy.defaultOpaquePorts", f.defaultOpaquePorts)
	put("cluster-networks", "clusterNetworks", f.clusterNetworks)
	put("ha", "highAvailability", f.ha)
	if ns := o.controlPlaneNS(); ns != "conduit" {
		setPath(vals, "controlPlaneNamespace", ns)
	}
	return vals
}

// overrides gathers values files, named flags and --set flags.
func (f *installFlags) overrides(fs *pflag.FlagSet, o *Options) (render.Overrides, error) {
	ov := render.Overrides{Set: f.set, SetString: f.setString, Flags: f.flagValues(fs, o)}
	for _, p := range f.valuesFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			return ov, fmt.Errorf("install: read values file: %w", err)
		}
		ov.Files = append(ov.Files, b)
	}
	return ov, nil
}

func setPath(m map[string]any, path string, v any) {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		sub, ok := m[k].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[k] = sub
		}
		m = sub
	}
	m[keys[len(keys)-1]] = v
}

func getPath(m map[string]any, path string) any {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		sub, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = sub
	}
	return m[keys[len(keys)-1]]
}

func deletePath(m map[string]any, path string) {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		sub, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		m = sub
	}
	delete(m, keys[len(keys)-1])
}

// secretPaths are the values never stored in the cluster's install settings.
var secretPaths = []string{"identity.trustAnchorsPEM", "identity.issuer.crtPEM", "identity.issuer.keyPEM", "installSettings"}

// installSettings serialises the user's values without identity material,
// for the conduit-config ConfigMap.
func installSettings(user map[string]any) (string, error) {
	c, err := yaml.Marshal(user)
	if err != nil {
		return "", fmt.Errorf("install: encode settings: %w", err)
	}
	clean := map[string]any{}
	if err := yaml.Unmarshal(c, &clean); err != nil {
		return "", fmt.Errorf("install: encode settings: %w", err)
	}
	for _, p := range secretPaths {
		deletePath(clean, p)
	}
	pruneEmpty(clean)
	if len(clean) == 0 {
		return "", nil
	}
	b, err := yaml.Marshal(clean)
	if err != nil {
		return "", fmt.Errorf("install: encode settings: %w", err)
	}
	return string(b), nil
}

func pruneEmpty(m map[string]any) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			pruneEmpty(sub)
			if len(sub) == 0 {
				delete(m, k)
			}
		}
	}
}

// identityMaterial fills in the trust anchors and issuer: from the files
// given, else (with generate) freshly generated ones.
func (f *installFlags) identityMaterial(user map[string]any, generate bool) error {
	external, _ := getPath(user, "identity.externalIssuer").(bool)
	if f.trustAnchorsFile != "" {
		b, err := os.ReadFile(f.trustAnchorsFile)
		if err != nil {
			return fmt.Errorf("install: --identity-trust-anchors-file: %w", err)
		}
		if _, err := pki.ParseCertificates(b); err != nil {
			return fmt.Errorf("install: --identity-trust-anchors-file %s: %w (expected a PEM bundle of CA certificates)", f.trustAnchorsFile, err)
		}
		setPath(user, "identity.trustAnchorsPEM", string(b))
	}
	if (f.issuerCertFile == "") != (f.issuerKeyFile == "") {
		return errors.New("install: give both --identity-issuer-certificate-file and --identity-issuer-key-file, or neither")
	}
	if external && f.issuerCertFile != "" {
		return errors.New("install: --identity-external-issuer and --identity-issuer-certificate-file exclude each other: with an external issuer, cert-manager (or you) writes the Secret conduit-identity-issuer")
	}
	if f.issuerCertFile != "" {
		if f.trustAnchorsFile == "" && getPath(user, "identity.trustAnchorsPEM") == nil {
			return errors.New("install: --identity-issuer-certificate-file needs --identity-trust-anchors-file (the roots that signed the issuer)")
		}
		crt, err := os.ReadFile(f.issuerCertFile)
		if err != nil {
			return fmt.Errorf("install: --identity-issuer-certificate-file: %w", err)
		}
		key, err := os.ReadFile(f.issuerKeyFile)
		if err != nil {
			return fmt.Errorf("install: --identity-issuer-key-file: %w", err)
		}
		setPath(user, "identity.issuer.crtPEM", string(crt))
		setPath(user, "identity.issuer.keyPEM", string(key))
	}
	anchors, _ := getPath(user, "identity.trustAnchorsPEM").(string)
	crt, _ := getPath(user, "identity.issuer.crtPEM").(string)
	key, _ := getPath(user, "identity.issuer.keyPEM").(string)
	if external && anchors == "" {
		return errors.New("install: --identity-external-issuer needs --identity-trust-anchors-file: the roots of the external issuer")
	}
	if anchors == "" && crt == "" && generate {
		td, _ := getPath(user, "identityTrustDomain").(string)
		if td == "" {
			td = "cluster.local"
		}
		root, err := pki.NewRoot("root.conduit."+td, generatedAnchorValidity)
		if err != nil {
			return fmt.Errorf("install: generate trust anchor: %w", err)
		}
		iss, err := root.NewIssuer("identity.conduit."+td, generatedIssuerValidity)
		if err != nil {
			return fmt.Errorf("install: generate issuer: %w", err)
		}
		k, err := pki.KeyPEM(iss.Key)
		if err != nil {
			return fmt.Errorf("install: generate issuer: %w", err)
		}
		anchors, crt, key = string(pki.CertPEM(root.Cert)), string(pki.CertPEM(iss.Cert)), string(k)
		setPath(user, "identity.trustAnchorsPEM", anchors)
		setPath(user, "identity.issuer.crtPEM", crt)
		setPath(user, "identity.issuer.keyPEM", key)
	}
	if anchors != "" && crt == "" && !external {
		return errors.New("install: --identity-trust-anchors-file without an issuer: also give --identity-issuer-certificate-file and --identity-issuer-key-file, or --identity-external-issuer")
	}
	var roots []*x509.Certificate
	if anchors != "" {
		var err error
		if roots, err = pki.ParseCertificates([]byte(anchors)); err != nil {
			return fmt.Errorf("install: trust anchors: %w", err)
		}
		// The identity service refuses a bundle holding an anchor under which
		// no workload certificate verifies; so does install, external issuer or not.
		for _, r := range roots {
			if err := pki.CheckExtKeyUsage(r); err != nil {
				return fmt.Errorf("install: trust anchors: %w", err)
			}
		}
	}
	if crt != "" && !external {
		if anchors == "" {
			return errors.New("install: an issuer is set but no trust anchors: pass --identity-trust-anchors-file (the roots that signed the issuer)")
		}
		iss, err := pki.LoadCA([]byte(crt), []byte(key))
		if err != nil {
			return fmt.Errorf("install: issuer: %w (the issuer must be a CA certificate with its matching key)", err)
		}
		if err := pki.VerifyIssuer(iss, roots, time.Now()); err != nil {
			if errors.Is(err, pki.ErrExtKeyUsage) {
				return fmt.Errorf("install: %w", err)
			}
			return fmt.Errorf("install: %w (sign the issuer with one of the trust anchors, or give the matching --identity-trust-anchors-file)", err)
		}
	}
	return nil
}

// defaultTag makes the images default to the CLI's own version.
func defaultTag(user map[string]any) {
	if t, _ := getPath(user, "image.tag").(string); t == "" {
		setPath(user, "image.tag", version.Version)
	}
}

func newInstallCmd(o *Options) *cobra.Command {
	f := &installFlags{}
	var crds bool
	c := &cobra.Command{
		Use:   "install",
		Short: "Print the Kubernetes manifests of the Conduit CRDs or control plane",
		Long: `install renders Conduit's Helm charts in-process and prints the manifests,
to be applied with kubectl. Install the CRDs first, then the control plane.

Without identity files, install generates a trust anchor and an issuer, both
valid for one year. The settings you give (not the identity material) are
stored in the ConfigMap conduit-config so that 'mesh upgrade' reuses them.`,
		Example: `  mesh install --crds | kubectl apply -f -
  mesh install | kubectl apply -f -
  mesh install --ha --registry localhost/conduit --tag dev | kubectl apply -f -
  mesh install --identity-trust-anchors-file ca.crt \
    --identity-issuer-certificate-file issuer.crt --identity-issuer-key-file issuer.key | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if crds {
				return renderCRDs(o)
			}
			if !f.ignoreCluster {
				k, err := o.Kube()
				if err != nil {
					return fmt.Errorf("install: %w (or pass --ignore-cluster to render without looking at the cluster)", err)
				}
				if err := preInstallChecks(ctx, k, o.controlPlaneNS()); err != nil {
					return err
				}
			}
			ov, err := f.overrides(cmd.Flags(), o)
			if err != nil {
				return err
			}
			user, err := ov.Merge()
			if err != nil {
				return fmt.Errorf("install: %w", err)
			}
			return renderControlPlane(o, f, user, true)
		},
	}
	c.Flags().BoolVar(&crds, "crds", false, "print the CustomResourceDefinitions only (install them first)")
	f.register(c.Flags())
	return c
}

func renderCRDs(o *Options) error {
	ms, err := render.Render(charts.CRDs, nil, o.controlPlaneNS())
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	_, err = o.Out.Write(render.YAML(ms))
	return err
}

// renderControlPlane completes user with identity material and the stored
// settings, renders the control plane and prints it.
func renderControlPlane(o *Options, f *installFlags, user map[string]any, generate bool) error {
	// check, upgrade, uninstall, inject and the extensions find the control
	// plane with --conduit-namespace: a different namespace given as a value
	// would install it where none of them looks.
	if ns, ok := getPath(user, "controlPlaneNamespace").(string); ok && ns != o.controlPlaneNS() {
		return fmt.Errorf("install: controlPlaneNamespace %s (from --set or --values) differs from --conduit-namespace %s: pass --conduit-namespace %s instead (and to the other mesh commands)", ns, o.controlPlaneNS(), ns)
	}
	if err := f.identityMaterial(user, generate); err != nil {
		return err
	}
	settings, err := installSettings(user)
	if err != nil {
		return err
	}
	if settings != "" {
		user["installSettings"] = settings
	}
	defaultTag(user)
	ms, err := render.Render(charts.ControlPlane, user, o.controlPlaneNS())
	if err == nil {
		err = checkInjectorConfig(ms, o.controlPlaneNS())
	}
	if err != nil {
		return fmt.Errorf("install: %w (check your --set and --values against 'mesh install --help' and the chart's values.yaml)", err)
	}
	_, err = o.Out.Write(render.YAML(ms))
	return err
}

// checkInjectorConfig reads the rendered injector configuration as the
// injector will (injector.ParseConfig): a value that the chart's schema lets
// through but the control plane refuses (port 0 in --default-opaque-ports, a
// range that ends below its start) is refused here, before it is applied,
// rather than by the control plane's pods once installed.
func checkInjectorConfig(ms []render.Manifest, ns string) error {
	for _, m := range ms {
		if m.Kind != "ConfigMap" || m.Name != injector.ConfigMapName {
			continue
		}
		var cm corev1.ConfigMap
		if err := yaml.Unmarshal([]byte(m.Content), &cm); err != nil {
			return fmt.Errorf("rendered ConfigMap %s: %w", m.Name, err)
		}
		if v, ok := cm.Data[injector.ConfigMapKey]; ok {
			if _, err := injector.ParseConfig(ns, []byte(v)); err != nil {
				return err
			}
		}
	}
	return nil
}

// preInstallChecks refuses to install without CRDs or over an existing control plane.
func preInstallChecks(ctx context.Context, k *Kube, ns string) error {
	if _, err := k.Client.Discovery().ServerResourcesForGroupVersion(serviceProfileGV); err != nil {
		if apierrors.IsNotFound(err) {
			return errors.New("install: the Conduit CRDs are not installed: run 'mesh install --crds | kubectl apply -f -' first")
		}
		return fmt.Errorf("install: cannot reach the Kubernetes API to look for the Conduit CRDs: %w (check --kubeconfig and --context, or pass --ignore-cluster)", err)
	}
	_, err := k.Client.CoreV1().ConfigMaps(ns).Get(ctx, configMapName, metav1.GetOptions{})
	switch {
	case err == nil:
		return fmt.Errorf("install: a Conduit control plane is already installed in namespace %q: use 'mesh upgrade' to change it", ns)
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("install: look for an existing control plane: %w (check --kubeconfig and --context, or pass --ignore-cluster)", err)
	}
	return nil
}

func (o *Options) controlPlaneNS() string {
	if o.ControlPlaneNamespace == "" {
		return "conduit"
	}
	return o.ControlPlaneNamespace
}

// readInstalled reads back what install stored: the user's settings and the
// identity material.
func readInstalled(ctx context.Context, k *Kube, ns string) (settings map[string]any, anchors string, issuer *corev1.Secret, err error) {
	cm, err := k.Client.CoreV1().ConfigMaps(ns).Get(ctx, configMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", nil, fmt.Errorf("upgrade: no Conduit control plane in namespace %q (ConfigMap %s not found): install it with 'mesh install | kubectl apply -f -', or pass --conduit-namespace", ns, configMapName)
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("upgrade: read ConfigMap %s/%s: %w", ns, configMapName, err)
	}
	settings = map[string]any{}
	if s := cm.Data[configInstallKey]; s != "" {
		if err := yaml.Unmarshal([]byte(s), &settings); err != nil {
			return nil, "", nil, fmt.Errorf("upgrade: the install settings in ConfigMap %s/%s (key %s) are not valid YAML: %w; fix or remove the key and pass every setting as flags", ns, configMapName, configInstallKey, err)
		}
	}
	roots, err := k.Client.CoreV1().ConfigMaps(ns).Get(ctx, trustRootsName, metav1.GetOptions{})
	if err != nil {
		return nil, "", nil, fmt.Errorf("upgrade: read the trust anchors ConfigMap %s/%s: %w (pass --identity-trust-anchors-file to provide them)", ns, trustRootsName, err)
	}
	anchors = roots.Data[trustRootsKey]
	issuer, err = k.Client.CoreV1().Secrets(ns).Get(ctx, issuerSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		issuer, err = nil, nil
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("upgrade: read the issuer Secret %s/%s: %w", ns, issuerSecretName, err)
	}
	return settings, anchors, issuer, nil
}
