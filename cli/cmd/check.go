package cmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/conduit-mesh/conduit/cli/healthcheck"
	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/pkg/pluginhost"
	"github.com/conduit-mesh/conduit/pkg/version"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// Category names of the core's checks (docs/check-json.md).
const (
	CategoryKubernetesAPI   = "kubernetes-api"
	CategoryPreInstall      = "pre-kubernetes-setup"
	CategoryCRDs            = "conduit-crds"
	CategoryControlPlane    = "conduit-control-plane"
	CategoryDataPlane       = "conduit-data-plane"
	proxyContainerName      = "conduit-proxy"
	proxyVersionLabel       = "conduit.dev/proxy-version"
	componentLabel          = "conduit.dev/control-plane-component"
	versionLabel            = "app.kubernetes.io/version"
	webhookName             = "conduit-proxy-injector"
	minKubernetesMinor      = 29 // native sidecars (init containers with restartPolicy: Always) on by default
	maxClockSkew            = 5 * time.Minute
	injectorServiceName     = "conduit-injector"
	injectorTLSSecret       = "conduit-injector-tls"
	injectorWebhookPort     = 8443
	serviceProfileCRDPlural = "serviceprofiles"
)

// controlPlaneComponents are the controller Deployments, conduit-<name>.
var controlPlaneComponents = []string{"identity", "destination", "injector"}

// ExtraCheckCategories, when set, returns more categories to run after the
// core's (the plugin SDK adds the extensions' checks here). It is called once
// per run with the command's options.
var ExtraCheckCategories func(ctx context.Context, o *Options) []healthcheck.Category

// checkOptions select the categories of a run.
type checkOptions struct {
	pre, proxy bool
	output     string
	wait       time.Duration
}

func newCheckCmd(o *Options) *cobra.Command {
	co := checkOptions{}
	c := &cobra.Command{
		Use:   "check",
		Short: "Check that the cluster is ready for Conduit, or that Conduit works",
		Long: `check runs categories of checks and prints each with a hint when it fails:
access to the Kubernetes API and its version, clock skew, the CRDs, the control
plane's pods, webhook and identity material, and with --proxy the data plane.
With --pre it checks that Conduit can be installed instead. Checks that can
become true (pods starting) are retried for up to --wait. The exit status is 1
when a check fails (warnings do not fail).`,
		Example: `  mesh check --pre
  mesh check
  mesh check --proxy -n emojivoto
  mesh check -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch co.output {
			case healthcheck.FormatTable, healthcheck.FormatShort, healthcheck.FormatJSON:
			default:
				return fmt.Errorf("check: unknown output format %q (accepted: table, short, json)", co.output)
			}
			if co.wait < 0 {
				return fmt.Errorf("check: --wait %s is negative (accepted: 0s, to run each check once, or more, e.g. 2m)", co.wait)
			}
			ctx := cmd.Context()
			cats := coreCategories(o, co)
			if ExtraCheckCategories != nil && !co.pre {
				cats = append(cats, ExtraCheckCategories(ctx, o)...)
			}
			rep := runChecks(ctx, o, cats, co)
			if !rep.Success {
				return exitError{code: 1}
			}
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&co.pre, "pre", false, "check that Conduit can be installed (instead of checking an installation)")
	f.BoolVar(&co.proxy, "proxy", false, "also check the data-plane proxies (in -n's namespace, or all namespaces)")
	f.StringVarP(&co.output, "output", "o", healthcheck.FormatTable, "output format: table, short or json")
	f.DurationVar(&co.wait, "wait", 5*time.Minute, "how long to retry checks that may become true (pods starting)")
	return c
}

// runChecks runs cats and prints the report in co.output.
func runChecks(ctx context.Context, o *Options, cats []healthcheck.Category, co checkOptions) healthcheck.Report {
	ho := healthcheck.Options{Wait: co.wait}
	var p *healthcheck.Printer
	if co.output != healthcheck.FormatJSON {
		p = &healthcheck.Printer{Out: o.Out, Short: co.output == healthcheck.FormatShort, TTY: isTerminal(o.Out)}
		ho.Observer = p
	}
	rep := healthcheck.Run(ctx, cats, ho)
	if p != nil {
		p.Summary(rep)
	} else {
		_ = healthcheck.WriteJSON(o.Out, rep)
	}
	return rep
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// checker holds the state the core's checks share within a run.
type checker struct {
	o    *Options
	kube *Kube
	ns   string
	now  func() time.Time
}

// checkNow is the clock of the checks (tests move it).
var checkNow = time.Now

func coreCategories(o *Options, co checkOptions) []healthcheck.Category {
	ch := &checker{o: o, ns: o.controlPlaneNS(), now: checkNow}
	cats := []healthcheck.Category{ch.kubernetesAPI()}
	if co.pre {
		return append(cats, ch.preInstall())
	}
	cats = append(cats, ch.crds(), ch.controlPlane())
	if co.proxy {
		cats = append(cats, ch.dataPlane(o.Namespace))
	}
	return cats
}

func (ch *checker) kubernetesAPI() healthcheck.Category {
	return healthcheck.Static{CategoryName: CategoryKubernetesAPI, List: []healthcheck.Check{
		{
			Description: "can initialize the client",
			Hint:        "check --kubeconfig, $KUBECONFIG and --context: 'kubectl config get-contexts' lists the contexts",
			Fatal:       true,
			Run: func(context.Context) error {
				k, err := ch.o.Kube()
				if err != nil {
					return err
				}
				ch.kube = k
				return nil
			},
		},
		{
			Description: "can query the Kubernetes API",
			Hint:        "check that the API server is reachable and your credentials are valid: 'kubectl version'",
			Fatal:       true,
			Run: func(context.Context) error {
				_, err := ch.kube.Client.Discovery().ServerVersion()
				return err
			},
		},
		{
			Description: fmt.Sprintf("is running Kubernetes 1.%d or later", minKubernetesMinor),
			Hint:        fmt.Sprintf("Conduit's proxy is a native sidecar, on by default from Kubernetes 1.%d: upgrade the cluster", minKubernetesMinor),
			Run: func(context.Context) error {
				v, err := ch.kube.Client.Discovery().ServerVersion()
				if err != nil {
					return err
				}
				major, _ := strconv.Atoi(strings.TrimRight(v.Major, "+"))
				minor, _ := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
				if major < 1 || (major == 1 && minor < minKubernetesMinor) {
					return fmt.Errorf("the cluster runs Kubernetes %s.%s", v.Major, v.Minor)
				}
				return nil
			},
		},
		{
			Description: "the local clock is in sync with the nodes'",
			Hint:        "synchronise the clocks (NTP) of this machine and the nodes: certificates are checked against them",
			Run:         ch.clockSkew,
		},
	}}
}

// clockSkew compares the node leases' renew times, which kubelets refresh
// every few seconds, with the local clock.
func (ch *checker) clockSkew(ctx context.Context) error {
	leases, err := ch.kube.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(ctx, metav1.ListOptions{})
	if err != nil {
		return healthcheck.Skip(fmt.Sprintf("cannot read node leases: %v", err))
	}
	now := ch.now()
	var skewed []string
	for _, l := range leases.Items {
		if l.Spec.RenewTime == nil {
			continue
		}
		d := now.Sub(l.Spec.RenewTime.Time)
		// A lease in the future means the node's clock is ahead; an old one
		// may also be a dead node, so only a large gap counts.
		if d < -maxClockSkew/10 || d > maxClockSkew {
			skewed = append(skewed, fmt.Sprintf("node %s (lease renewed %s ago)", l.Name, d.Round(time.Second)))
		}
	}
	if len(skewed) > 0 {
		return healthcheck.Warning(fmt.Errorf("clock skew with %s", strings.Join(skewed, ", ")))
	}
	return nil
}

func (ch *checker) can(ctx context.Context, verb, group, resource, ns string) error {
	r := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Namespace: ns},
	}}
	res, err := ch.kube.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, r, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("access review for %s %s: %w", verb, resource, err)
	}
	if !res.Status.Allowed {
		what := resource
		if group != "" {
			what += "." + group
		}
		return fmt.Errorf("you may not %s %s", verb, what)
	}
	return nil
}

func (ch *checker) preInstall() healthcheck.Category {
	type res struct{ group, resource string }
	clusterScoped := []res{{"", "namespaces"}, {"apiextensions.k8s.io", "customresourcedefinitions"},
		{"rbac.authorization.k8s.io", "clusterroles"}, {"rbac.authorization.k8s.io", "clusterrolebindings"},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations"}}
	namespaced := []res{{"", "serviceaccounts"}, {"", "services"}, {"", "secrets"}, {"", "configmaps"},
		{"apps", "deployments"}, {"rbac.authorization.k8s.io", "roles"}, {"rbac.authorization.k8s.io", "rolebindings"},
		{"policy", "poddisruptionbudgets"}}
	canAll := func(rs []res, ns string) func(context.Context) error {
		return func(ctx context.Context) error {
			var errs []error
			for _, r := range rs {
				if err := ch.can(ctx, "create", r.group, r.resource, ns); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}
	}
	return healthcheck.Static{CategoryName: CategoryPreInstall, List: []healthcheck.Check{
		{
			Description: "the control plane namespace does not exist yet",
			Hint:        "Conduit is installed (or being deleted): use 'mesh upgrade', or 'mesh uninstall | kubectl delete -f -' first",
			Retry:       true,
			Run: func(ctx context.Context) error {
				n, err := ch.kube.Client.CoreV1().Namespaces().Get(ctx, ch.ns, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return nil
				}
				if err != nil {
					return err
				}
				if n.DeletionTimestamp != nil {
					return fmt.Errorf("namespace %s is being deleted", ch.ns)
				}
				return fmt.Errorf("namespace %s exists", ch.ns)
			},
		},
		{
			Description: "can create cluster-wide resources (namespaces, CRDs, cluster roles, webhooks)",
			Hint:        "install with a cluster-admin account, or ask your administrator for these permissions",
			Run:         canAll(clusterScoped, ""),
		},
		{
			Description: "can create the control plane's namespaced resources",
			Hint:        "install with an account that may create these resources in the control plane namespace",
			Run:         canAll(namespaced, ch.ns),
		},
	}}
}

func (ch *checker) crds() healthcheck.Category {
	return healthcheck.Static{CategoryName: CategoryCRDs, List: []healthcheck.Check{{
		Description: "the ServiceProfile CRD (serviceprofiles.conduit.dev) is installed",
		Hint:        "install the CRDs: 'mesh install --crds | kubectl apply -f -'",
		Retry:       true,
		Run: func(context.Context) error {
			l, err := ch.kube.Client.Discovery().ServerResourcesForGroupVersion(serviceProfileGV)
			if err != nil {
				return fmt.Errorf("API group %s: %w", serviceProfileGV, err)
			}
			for _, r := range l.APIResources {
				if r.Name == serviceProfileCRDPlural {
					return nil
				}
			}
			return fmt.Errorf("API group %s has no resource %s", serviceProfileGV, serviceProfileCRDPlural)
		},
	}}}
}

func (ch *checker) controlPlane() healthcheck.Category {
	return healthcheck.Static{CategoryName: CategoryControlPlane, List: []healthcheck.Check{
		{
			Description: "the control plane namespace exists",
			Hint:        "install the control plane: 'mesh install | kubectl apply -f -' (or pass --conduit-namespace)",
			Fatal:       true,
			Retry:       true,
			Run: func(ctx context.Context) error {
				_, err := ch.kube.Client.CoreV1().Namespaces().Get(ctx, ch.ns, metav1.GetOptions{})
				return err
			},
		},
		{
			Description: "the control plane configuration (ConfigMap conduit-config) exists",
			Hint:        "re-apply the control plane: 'mesh upgrade | kubectl apply -f -'",
			Retry:       true,
			Run: func(ctx context.Context) error {
				_, err := ch.kube.Client.CoreV1().ConfigMaps(ch.ns).Get(ctx, configMapName, metav1.GetOptions{})
				return err
			},
		},
		ch.clusterNetworksCheck(),
		{
			Description: "the control plane's RBAC (cluster roles and bindings) exists",
			Hint:        "re-apply the control plane: 'mesh upgrade | kubectl apply -f -'",
			Retry:       true,
			Run:         ch.controlPlaneRBAC,
		},
		{
			Description: "control plane pods are ready",
			Hint:        fmt.Sprintf("inspect them: 'kubectl -n %s get pods' and 'kubectl -n %s describe pod <pod>'", ch.ns, ch.ns),
			Retry:       true,
			Run:         ch.controlPlanePodsReady,
		},
		{
			Description: "the proxy injector webhook is configured with a valid CA bundle",
			Hint:        fmt.Sprintf("the injector writes the caBundle at startup: check 'kubectl -n %s logs deploy/conduit-injector -c injector'", ch.ns),
			Retry:       true,
			Run:         ch.webhookConfigured,
		},
		{
			Description: "the proxy injector webhook is reachable and serves a certificate the caBundle trusts",
			Hint:        fmt.Sprintf("check the injector pods: 'kubectl -n %s get pods -l %s=injector'", ch.ns, componentLabel),
			Retry:       true,
			Run:         ch.webhookReachable,
		},
		{
			Description: "the control plane runs the hooks of the extensions in the allow-list",
			Hint:        fmt.Sprintf("see why in %s; after an extension's upgrade, check its new binary and run 'mesh extensions allow <name>'", hookLogs(ch.ns, []string{"injector", "destination"})),
			Retry:       true,
			Run:         ch.extensionHooks,
		},
		{
			Description: "the trust anchors are valid and not about to expire",
			Hint:        "rotate the trust anchors before they expire (docs/identity.md)",
			Run:         ch.trustAnchors,
		},
		{
			Description: "the issuer is valid, chains to the trust anchors and is not about to expire",
			Hint:        fmt.Sprintf("replace the Secret %s/%s with an issuer signed by a trust anchor (cert-manager renews it with --identity-external-issuer)", ch.ns, issuerSecretName),
			Retry:       true,
			Run:         ch.issuer,
		},
		{
			Description: "the control plane runs this CLI's version",
			Hint:        "upgrade the control plane: 'mesh upgrade | kubectl apply -f -', or use the CLI of the control plane's version",
			Run: func(ctx context.Context) error {
				v, err := serverVersion(ctx, ch.kube, ch.ns)
				if err != nil {
					return healthcheck.Warning(err)
				}
				if v != version.Version {
					return healthcheck.Warning(fmt.Errorf("control plane %s, CLI %s", v, version.Version))
				}
				return nil
			},
		},
	}}
}

// extensionHooks checks that every ready injector and destination pod
// that calls an allowed extension's hooks runs its allowed binary: a
// warning when not (pods are injected without the hook's patch), an error
// for an extension whose failure policy is Fail (they are refused).
func (ch *checker) extensionHooks(ctx context.Context) error {
	al, _, err := pluginhost.ReadAllowList(ctx, ch.kube.Client, ch.ns)
	if err != nil {
		return err
	}
	if len(al) == 0 {
		return nil
	}
	exts, err := pluginhost.ClusterExtensions(ctx, ch.kube.Client)
	if err != nil {
		return err
	}
	var problems []string
	failClosed := false // a problem of a Fail extension: pods are refused
	for _, ce := range exts {
		entry, ok := al[ce.Name]
		comps := hookComponents(ce)
		if !ok || len(comps) == 0 {
			continue // not allowed (a warning of its own category), or no hook
		}
		states, err := readHookStates(ctx, ch.kube, ch.ns, ce.Name, comps)
		if err != nil {
			return err
		}
		n, refusing := len(problems), false
		for _, s := range states {
			if !s.runs(entry) {
				problems = append(problems, ce.Name+": "+s.describe(entry))
				// The digest running under the old policy (Ignore) refuses
				// no pod.
				refusing = refusing || s.state != pluginhost.StateRunning || s.sha != entry.SHA256
			}
		}
		if refusing && entry.FailurePolicy == pluginhost.Fail {
			failClosed = true
			problems[n] += " (failure policy Fail: the injector refuses the pods it would patch)"
		}
	}
	if len(problems) == 0 {
		return nil
	}
	err = errors.New(strings.Join(problems, "; "))
	if failClosed {
		return err
	}
	// Failure policy Ignore: pods are injected without the hooks' patches,
	// the extension is degraded, the core is not.
	return healthcheck.Warning(err)
}

func (ch *checker) controlPlaneRBAC(ctx context.Context) error {
	var missing []string
	for _, c := range controlPlaneComponents {
		name := fmt.Sprintf("conduit-%s-%s", ch.ns, c)
		if _, err := ch.kube.Client.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); err != nil {
			missing = append(missing, "ClusterRole "+name)
		}
		if _, err := ch.kube.Client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{}); err != nil {
			missing = append(missing, "ClusterRoleBinding "+name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

func (ch *checker) controlPlanePodsReady(ctx context.Context) error {
	var problems []string
	for _, c := range controlPlaneComponents {
		name := "conduit-" + c
		d, err := ch.kube.Client.AppsV1().Deployments(ch.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			problems = append(problems, fmt.Sprintf("deployment %s: %v", name, err))
			continue
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ReadyReplicas < want || d.Status.UpdatedReplicas < want {
			problems = append(problems, fmt.Sprintf("deployment %s: %d of %d pods ready%s", name, d.Status.ReadyReplicas, want, podProblems(ctx, ch.kube, d)))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// podProblems describes why a Deployment's pods are not ready.
func podProblems(ctx context.Context, k *Kube, d *appsv1.Deployment) string {
	sel := metav1.FormatLabelSelector(d.Spec.Selector)
	pods, err := k.Client.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return ""
	}
	var out []string
	for _, p := range pods.Items {
		for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
			switch {
			case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
				out = append(out, fmt.Sprintf("%s/%s: %s", p.Name, cs.Name, cs.State.Waiting.Reason))
			case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
				out = append(out, fmt.Sprintf("%s/%s: exited %d", p.Name, cs.Name, cs.State.Terminated.ExitCode))
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, ", ") + ")"
}

func (ch *checker) webhookConfigured(ctx context.Context) error {
	w, err := ch.kube.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("MutatingWebhookConfiguration %s not found: re-apply the control plane ('mesh upgrade | kubectl apply -f -'); the injector fills its caBundle within 10 minutes, or at once when restarted", webhookName)
	}
	if err != nil {
		return err
	}
	if len(w.Webhooks) == 0 {
		return fmt.Errorf("MutatingWebhookConfiguration %s has no webhook", webhookName)
	}
	for _, h := range w.Webhooks {
		s := h.ClientConfig.Service
		if s == nil || s.Name != injectorServiceName || s.Namespace != ch.ns {
			return fmt.Errorf("webhook %s does not call the Service %s/%s", h.Name, ch.ns, injectorServiceName)
		}
		if len(h.ClientConfig.CABundle) == 0 {
			return fmt.Errorf("webhook %s has no caBundle yet", h.Name)
		}
		cas, err := pki.ParseCertificates(h.ClientConfig.CABundle)
		if err != nil {
			return fmt.Errorf("webhook %s caBundle: %w", h.Name, err)
		}
		now := ch.now()
		for _, c := range cas {
			if now.After(c.NotAfter) {
				return fmt.Errorf("webhook %s caBundle certificate %q expired at %s", h.Name, c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		if err := ch.verifyInjectorCert(ctx, cas, now); err != nil {
			return fmt.Errorf("webhook %s: %w", h.Name, err)
		}
	}
	return nil
}

// verifyInjectorCert checks the injector's serving certificate, when it is
// stored in its Secret, against the webhook's caBundle.
func (ch *checker) verifyInjectorCert(ctx context.Context, cas []*x509.Certificate, now time.Time) error {
	s, err := ch.kube.Client.CoreV1().Secrets(ch.ns).Get(ctx, injectorTLSSecret, metav1.GetOptions{})
	if err != nil || len(s.Data["tls.crt"]) == 0 {
		return nil // not readable or not (yet) written: the caBundle checks suffice
	}
	certs, err := pki.ParseCertificates(s.Data["tls.crt"])
	if err != nil {
		return fmt.Errorf("injector certificate in Secret %s: %w", injectorTLSSecret, err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	name := fmt.Sprintf("%s.%s.svc", injectorServiceName, ch.ns)
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: name, CurrentTime: now}); err != nil {
		return fmt.Errorf("the injector's certificate does not verify against the caBundle for %s: %w", name, err)
	}
	return nil
}

func (ch *checker) webhookReachable(ctx context.Context) error {
	eps, err := ch.kube.Client.DiscoveryV1().EndpointSlices(ch.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + injectorServiceName})
	if err != nil {
		return err
	}
	var pod string
	ready := false
	for _, s := range eps.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready = true
				if e.TargetRef != nil && e.TargetRef.Kind == "Pod" && pod == "" {
					pod = e.TargetRef.Name
				}
			}
		}
	}
	if !ready {
		return fmt.Errorf("the Service %s/%s has no ready endpoint", ch.ns, injectorServiceName)
	}
	if pod == "" || ch.kube.Config == nil {
		return nil // no pod to probe, or no real cluster (unit tests without a REST config)
	}
	return ch.probeWebhookTLS(ctx, pod)
}

// probeWebhookTLS port-forwards to the injector pod's webhook port and checks
// that it answers TLS with a certificate the webhook's caBundle trusts for
// the Service's name, as the API server will.
func (ch *checker) probeWebhookTLS(ctx context.Context, pod string) error {
	w, err := ch.kube.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookName, metav1.GetOptions{})
	if err != nil || len(w.Webhooks) == 0 || len(w.Webhooks[0].ClientConfig.CABundle) == 0 {
		return nil // reported by the webhook configuration check
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(w.Webhooks[0].ClientConfig.CABundle) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	addr, stop, err := portForward(ctx, ch.kube, ch.ns, pod, injectorWebhookPort)
	if err != nil {
		return fmt.Errorf("port-forward to the injector %s: %w", pod, err)
	}
	defer stop()
	name := fmt.Sprintf("%s.%s.svc", injectorServiceName, ch.ns)
	d := &tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("the injector %s does not answer TLS on port %d with a certificate the caBundle trusts for %s: %w", pod, injectorWebhookPort, name, err)
	}
	return conn.Close()
}

func (ch *checker) anchors(ctx context.Context) ([]*x509.Certificate, error) {
	_, certs, err := readTrustBundle(ctx, ch.kube.Client, ch.ns)
	return certs, err
}

// readTrustBundle reads the trust anchors of the control plane in ns:
// their ConfigMap and its certificates. The ConfigMap is nil when it could
// not be read.
func readTrustBundle(ctx context.Context, c kubernetes.Interface, ns string) (*corev1.ConfigMap, []*x509.Certificate, error) {
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, trustRootsName, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("read ConfigMap %s/%s: %w", ns, trustRootsName, err)
	}
	certs, err := pki.ParseCertificates([]byte(cm.Data[trustRootsKey]))
	if err != nil {
		return cm, nil, fmt.Errorf("ConfigMap %s/%s key %s: %w", ns, trustRootsName, trustRootsKey, err)
	}
	return cm, certs, nil
}

// expiryWarning is how long before a certificate's expiry check warns.
const expiryWarning = 60 * 24 * time.Hour

// expiryFinding is the expiry status of a trust anchor or of the issuer.
type expiryFinding struct {
	fail, warn bool
	message    string
}

// checkExpiry reports each anchor and the issuer (may be nil): a failure
// when expired or not yet valid, a warning within expiryWarning of expiry.
// (core/identity has the same rules in CheckExpiry; the CLI keeps its own
// copy so that it does not link the identity service.)
func checkExpiry(anchors []*x509.Certificate, issuer *x509.Certificate, now time.Time) []expiryFinding {
	var out []expiryFinding
	one := func(what string, c *x509.Certificate, fix string) {
		name := c.Subject.CommonName
		if name == "" {
			name = c.Subject.String()
		}
		left := c.NotAfter.Sub(now)
		switch {
		case now.Before(c.NotBefore):
			out = append(out, expiryFinding{fail: true, message: fmt.Sprintf("%s %q is not valid before %s (check the clocks): %s", what, name, c.NotBefore.UTC().Format(time.RFC3339), fix)})
		case left <= 0:
			out = append(out, expiryFinding{fail: true, message: fmt.Sprintf("%s %q expired at %s: %s", what, name, c.NotAfter.UTC().Format(time.RFC3339), fix)})
		case left <= expiryWarning:
			out = append(out, expiryFinding{warn: true, message: fmt.Sprintf("%s %q expires in %d days (%s): %s", what, name, int(left.Hours()/24), c.NotAfter.UTC().Format(time.RFC3339), fix)})
		}
	}
	for _, a := range anchors {
		one("trust anchor", a, "rotate the trust anchors before they expire (docs/identity.md)")
	}
	if issuer != nil {
		one("issuer", issuer, "replace the conduit-identity-issuer Secret with an issuer signed by a current trust anchor")
	}
	return out
}

// findings turns expiry findings into a check result.
func findings(fs []expiryFinding) error {
	var fails, warns []string
	for _, f := range fs {
		switch {
		case f.fail:
			fails = append(fails, f.message)
		case f.warn:
			warns = append(warns, f.message)
		}
	}
	if len(fails) > 0 {
		return errors.New(strings.Join(append(fails, warns...), "\n"))
	}
	if len(warns) > 0 {
		return healthcheck.Warning(errors.New(strings.Join(warns, "\n")))
	}
	return nil
}

func (ch *checker) trustAnchors(ctx context.Context) error {
	certs, err := ch.anchors(ctx)
	if err != nil {
		return err
	}
	for _, c := range certs {
		if !c.IsCA {
			return fmt.Errorf("trust anchor %q is not a CA certificate", c.Subject.CommonName)
		}
		// What the identity service refuses the bundle for.
		if err := pki.CheckExtKeyUsage(c); err != nil {
			return fmt.Errorf("trust anchor: %w", err)
		}
	}
	return findings(checkExpiry(certs, nil, ch.now()))
}

func (ch *checker) issuer(ctx context.Context) error {
	roots, err := ch.anchors(ctx)
	if err != nil {
		return fmt.Errorf("trust anchors: %w", err)
	}
	s, err := ch.kube.Client.CoreV1().Secrets(ch.ns).Get(ctx, issuerSecretName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	iss, err := pki.LoadCA(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		return fmt.Errorf("the Secret %s: %w", issuerSecretName, err)
	}
	if err := pki.VerifyIssuer(iss, roots, ch.now()); err != nil {
		if f := findings(checkExpiry(nil, iss.Cert, ch.now())); f != nil {
			return f
		}
		return err
	}
	return findings(checkExpiry(nil, iss.Cert, ch.now()))
}

func (ch *checker) dataPlane(ns string) healthcheck.Category {
	where := "all namespaces"
	if ns != "" {
		where = "namespace " + ns
	}
	return healthcheck.Static{CategoryName: CategoryDataPlane, List: []healthcheck.Check{
		{
			Description: "data-plane proxies are ready",
			Hint:        "inspect the proxy: 'kubectl -n <ns> logs <pod> -c conduit-proxy' and 'mesh diagnostics proxy-metrics <pod>'",
			Retry:       true,
			Run: func(ctx context.Context) error {
				pods, err := ch.meshedPods(ctx, ns)
				if err != nil {
					return err
				}
				if len(pods) == 0 {
					return healthcheck.Skip("no meshed pods in " + where)
				}
				var notReady []string
				for _, p := range pods {
					if !proxyReady(&p) {
						notReady = append(notReady, p.Namespace+"/"+p.Name)
					}
				}
				if len(notReady) > 0 {
					return fmt.Errorf("proxies not ready: %s", strings.Join(notReady, ", "))
				}
				return nil
			},
		},
		{
			Description: "data-plane proxies hold valid certificates that chain to the trust anchors",
			Hint: "an expired certificate: the proxy cannot renew it, see why in 'kubectl -n <ns> logs <pod> -c conduit-proxy' and check the " +
				"control plane with 'mesh check'; one from other anchors: restart the workload; details: 'mesh identity -n <ns> <pod>'",
			Retry: true,
			Run: func(ctx context.Context) error {
				pods, err := ch.meshedPods(ctx, ns)
				if err != nil {
					return err
				}
				return ch.proxyCertificates(ctx, pods, where)
			},
		},
		{
			Description: "data-plane proxies reach the destination service",
			Hint: "such a proxy serves what discovery last told it and refuses targets it never resolved: check the destination " +
				"pods with 'mesh check', NetworkPolicies between the pod and the control plane's namespace, and " +
				"'kubectl -n <ns> logs <pod> -c conduit-proxy'",
			Run: func(ctx context.Context) error {
				pods, err := ch.meshedPods(ctx, ns)
				if err != nil {
					return err
				}
				return ch.proxyDiscovery(ctx, pods, where)
			},
		},
		{
			Description: "data-plane proxies run the control plane's proxy version",
			Hint:        "restart the workloads to pick up the current proxy: 'kubectl -n <ns> rollout restart deploy/<name>'",
			Run: func(ctx context.Context) error {
				want, err := ch.controlPlaneProxyVersion(ctx)
				if err != nil {
					return healthcheck.Warning(err)
				}
				pods, err := ch.meshedPods(ctx, ns)
				if err != nil {
					return err
				}
				if len(pods) == 0 {
					return healthcheck.Skip("no meshed pods in " + where)
				}
				var old []string
				for _, p := range pods {
					if v := p.Labels[proxyVersionLabel]; v != want {
						old = append(old, fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, v))
					}
				}
				if len(old) > 0 {
					return healthcheck.Warning(fmt.Errorf("proxies not on %s: %s", want, strings.Join(old, ", ")))
				}
				return nil
			},
		},
	}}
}

// readyProxies is pods without those whose proxy is not ready (they have
// no certificate yet, which the readiness check reports); a Skip when none
// is left.
func readyProxies(pods []corev1.Pod, where string) ([]corev1.Pod, error) {
	pods = slices.DeleteFunc(pods, func(p corev1.Pod) bool { return !proxyReady(&p) })
	if len(pods) == 0 {
		return nil, healthcheck.Skip("no ready meshed pods in " + where)
	}
	return pods, nil
}

// eachProxy calls f for each of pods, proxyCheckConcurrency at a time (each
// call port-forwards to the pod's proxy), and returns when all are done.
func eachProxy(pods []corev1.Pod, f func(i int, p *corev1.Pod)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, proxyCheckConcurrency)
	for i := range pods {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i, &pods[i])
		}()
	}
	wg.Wait()
}

// proxyCheckConcurrency bounds the port-forwards of proxyCertificates and
// proxyDiscovery.
const proxyCheckConcurrency = 4

// renewalOverdue is the share of a certificate's life after which a proxy
// that still holds it has failed to renew it: proxies renew at 70 %, and
// retry until they succeed.
const renewalOverdue = 0.8

// proxyCertificates reads the certificate of every ready proxy of pods (one
// that is not ready has none yet, which the readiness check reports) and
// fails naming those that have expired or do not chain to the trust anchors.
// A proxy keeps serving, ready, once its certificate has expired
// (docs/proxy.md, Identity): this is where that shows. A certificate past
// renewalOverdue of its life is a warning, before the expiry.
func (ch *checker) proxyCertificates(ctx context.Context, pods []corev1.Pod, where string) error {
	pods, err := readyProxies(pods, where)
	if err != nil {
		return err
	}
	anchors, err := ch.anchors(ctx)
	if err != nil {
		return err
	}
	now := ch.now()
	problems, overdue := make([]string, len(pods)), make([]string, len(pods))
	eachProxy(pods, func(i int, p *corev1.Pod) {
		name := p.Namespace + "/" + p.Name
		pemChain, err := fetchProxyCertificate(ctx, ch.kube, p.Namespace, p.Name)
		if err != nil {
			problems[i] = err.Error()
			return
		}
		chain, err := pki.ParseCertificates(pemChain)
		if err != nil {
			problems[i] = fmt.Sprintf("%s: unreadable certificate: %v", name, err)
			return
		}
		switch r := describeChain(name, chain, anchors, nil, now); {
		case !now.Before(r.NotAfter):
			problems[i] = fmt.Sprintf("%s: certificate expired at %s (%s)", name, r.NotAfter.Format(time.RFC3339), r.ExpiresIn)
		case !r.Trusted:
			problems[i] = fmt.Sprintf("%s: certificate not trusted: %s", name, strings.TrimPrefix(r.TrustDetail, "no: "))
		default:
			life, spent := r.NotAfter.Sub(r.NotBefore), now.Sub(r.NotBefore)
			if life > 0 && float64(spent) > renewalOverdue*float64(life) {
				overdue[i] = fmt.Sprintf("%s: %.0f %% of its certificate's life spent, not renewed (expires at %s, in %s)",
					name, 100*float64(spent)/float64(life), r.NotAfter.Format(time.RFC3339), r.ExpiresIn)
			}
		}
	})
	empty := func(s string) bool { return s == "" }
	problems, overdue = slices.DeleteFunc(problems, empty), slices.DeleteFunc(overdue, empty)
	if len(problems) > 0 {
		return fmt.Errorf("%d of %d proxies: %s", len(problems), len(pods), strings.Join(append(problems, overdue...), "; "))
	}
	if len(overdue) > 0 {
		return healthcheck.Warning(fmt.Errorf("%d of %d proxies overdue for renewal (they renew at 70 %% of the life): %s",
			len(overdue), len(pods), strings.Join(overdue, "; ")))
	}
	return nil
}

// proxyDiscovery reads the metrics of every ready proxy of pods and warns
// naming those that report the destination service unreachable
// (discovery_unreachable 1), with how many targets each serves from state
// the service no longer confirms. A proxy whose metrics cannot be read is
// named too; one that does not report the metric (an older proxy) is not.
func (ch *checker) proxyDiscovery(ctx context.Context, pods []corev1.Pod, where string) error {
	pods, err := readyProxies(pods, where)
	if err != nil {
		return err
	}
	problems := make([]string, len(pods))
	eachProxy(pods, func(i int, p *corev1.Pod) {
		m, err := fetchMetrics(ctx, ch.kube, p.Namespace, p.Name, proxyAdminPort)
		if err != nil {
			problems[i] = fmt.Sprintf("%s/%s: metrics unreadable: %v", p.Namespace, p.Name, err)
			return
		}
		if d := discoveryOf(m); d.unreachable {
			problems[i] = fmt.Sprintf("%s/%s: destination service unreachable, %d targets served from what it said before",
				p.Namespace, p.Name, d.stale)
		}
	})
	problems = slices.DeleteFunc(problems, func(s string) bool { return s == "" })
	if len(problems) > 0 {
		return healthcheck.Warning(fmt.Errorf("%d of %d proxies: %s", len(problems), len(pods), strings.Join(problems, "; ")))
	}
	return nil
}

// discovery is what a proxy's metrics say of its discovery client.
type discovery struct {
	unreachable bool
	stale       int // endpoints and profiles
}

// discoveryOf reads discovery_unreachable and discovery_stale from a
// proxy's Prometheus text exposition.
func discoveryOf(metrics []byte) discovery {
	var d discovery
	for line := range strings.Lines(string(metrics)) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		switch {
		case name == "discovery_unreachable":
			d.unreachable = value == "1"
		case strings.HasPrefix(name, "discovery_stale{"):
			if n, err := strconv.Atoi(value); err == nil {
				d.stale += n
			}
		}
	}
	return d
}

// meshedPods lists the running pods meshed by this control plane in ns ("" = all).
func (ch *checker) meshedPods(ctx context.Context, ns string) ([]corev1.Pod, error) {
	l, err := ch.kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: controlPlaneNSLabel + "=" + ch.ns})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

func proxyReady(p *corev1.Pod) bool {
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if cs.Name == proxyContainerName {
			return cs.Ready
		}
	}
	return false
}

// controlPlaneProxyVersion is the proxy version the injector gives new pods
// (conduit-config), else the control plane's version.
func (ch *checker) controlPlaneProxyVersion(ctx context.Context) (string, error) {
	cm, err := ch.kube.Client.CoreV1().ConfigMaps(ch.ns).Get(ctx, configMapName, metav1.GetOptions{})
	if err == nil {
		var v struct {
			Proxy struct {
				Image struct{ Version string } `json:"image"`
			} `json:"proxy"`
		}
		if yaml.Unmarshal([]byte(cm.Data["values"]), &v) == nil && v.Proxy.Image.Version != "" {
			return v.Proxy.Image.Version, nil
		}
	}
	return serverVersion(ctx, ch.kube, ch.ns)
}

// serverVersion is the control plane's version: the version label of its
// Deployments, else the tag of their controller image.
func serverVersion(ctx context.Context, k *Kube, ns string) (string, error) {
	var versions []string
	for _, c := range controlPlaneComponents {
		d, err := k.Client.AppsV1().Deployments(ns).Get(ctx, "conduit-"+c, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return "", fmt.Errorf("read deployment conduit-%s: %w", c, err)
		}
		v := d.Labels[versionLabel]
		if v == "" {
			for _, ct := range d.Spec.Template.Spec.Containers {
				if ct.Name == c {
					v = imageTag(ct.Image)
				}
			}
		}
		if v != "" && !slices.Contains(versions, v) {
			versions = append(versions, v)
		}
	}
	switch len(versions) {
	case 0:
		return "", fmt.Errorf("no Conduit control plane found in namespace %s", ns)
	case 1:
		return versions[0], nil
	}
	slices.Sort(versions)
	return "", fmt.Errorf("the control plane runs several versions (%s): an upgrade is in progress or incomplete", strings.Join(versions, ", "))
}

func imageTag(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}
