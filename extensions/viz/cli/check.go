package cli

import (
	"context"
	"fmt"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"github.com/conduit-mesh/conduit/extensions/viz/metricsapi"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Scraper reports how Prometheus scrapes the proxies (the metrics API client).
type Scraper interface {
	Scrapes(context.Context) (metrics.ScrapeStatus, error)
}

// Check runs the viz health checks against the cluster: the namespace
// (vizNS; empty: the one labelled conduit.dev/extension=viz, else
// DefaultVizNamespace), its deployments, the metrics API (api; nil: through
// the API server's service proxy), and Prometheus scraping the proxies.
func Check(ctx context.Context, kc kubernetes.Interface, api Scraper, vizNS string) []sdk.CheckCategory {
	cat := sdk.CheckCategory{Name: "conduit-viz"}
	// A failed check says what went wrong (msg) and what to do (hint): the
	// host prints msg as the error, "reported by the extension" when empty.
	add := func(desc string, st sdk.CheckStatus, msg, hint string) {
		cat.Checks = append(cat.Checks, sdk.CheckResult{Description: desc, Status: st, Error: msg, Hint: hint})
	}
	notFound := fmt.Sprintf("namespace %s not found", vizNS)
	if vizNS == "" {
		names, err := VizNamespaces(ctx, kc)
		switch {
		case err != nil && !apierrors.IsForbidden(err):
			add("viz namespace exists", sdk.StatusFail, err.Error(),
				"check that the cluster of your kubeconfig context is reachable and that you may list namespaces: kubectl get namespaces -l "+vizSelector)
			return []sdk.CheckCategory{cat}
		case len(names) > 1:
			add("viz is installed in one namespace", sdk.StatusFail, moreThanOne(names),
				"keep one, and remove the others with: mesh viz uninstall --set namespace=NAMESPACE | kubectl delete -f -")
			return []sdk.CheckCategory{cat}
		case len(names) == 1:
			vizNS, notFound = names[0], fmt.Sprintf("namespace %s not found", names[0])
		default: // none labelled, or namespaces may not be listed: the default's checks say what is wrong
			vizNS = DefaultVizNamespace
			notFound = fmt.Sprintf("namespace %s not found, and no namespace is labelled %s", vizNS, vizSelector)
		}
	}
	ns, err := kc.CoreV1().Namespaces().Get(ctx, vizNS, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		add(fmt.Sprintf("viz namespace %s exists", vizNS), sdk.StatusFail, notFound, "install viz: mesh viz install | kubectl apply -f -")
		return []sdk.CheckCategory{cat}
	case err != nil:
		add(fmt.Sprintf("viz namespace %s exists", vizNS), sdk.StatusFail, err.Error(),
			"check that the cluster of your kubeconfig context is reachable and that you may get namespaces: kubectl get namespace "+vizNS)
		return []sdk.CheckCategory{cat}
	}
	if ns.Labels[ExtensionLabel] != "viz" {
		add(fmt.Sprintf("namespace %s is labelled %s=viz", vizNS, ExtensionLabel), sdk.StatusFail,
			fmt.Sprintf("namespace %s has no label %s=viz", vizNS, ExtensionLabel),
			"the namespace exists but 'mesh viz install' did not create it: kubectl get namespace "+vizNS+" --show-labels")
		return []sdk.CheckCategory{cat}
	}
	add(fmt.Sprintf("viz namespace %s exists", vizNS), sdk.StatusOK, "", "")

	deps, err := kc.AppsV1().Deployments(vizNS).List(ctx, metav1.ListOptions{LabelSelector: ExtensionLabel + "=viz"})
	if err != nil {
		add("viz deployments are available", sdk.StatusFail, err.Error(), "check that you may list deployments: kubectl -n "+vizNS+" get deployments")
		return []sdk.CheckCategory{cat}
	}
	var notReady []string
	for _, d := range deps.Items {
		if !available(&d) {
			notReady = append(notReady, d.Name)
		}
	}
	switch {
	case len(deps.Items) == 0:
		add("viz deployments are available", sdk.StatusFail, "no viz deployment found in "+vizNS, "reinstall: mesh viz install | kubectl apply -f -")
	case len(notReady) > 0:
		add("viz deployments are available", sdk.StatusFail, fmt.Sprintf("not available yet: %v", notReady), fmt.Sprintf("kubectl -n %s get pods", vizNS))
	default:
		add("viz deployments are available", sdk.StatusOK, "", "")
	}

	if api == nil {
		api = metricsapi.NewKubeClient(kc, vizNS)
	}
	s, err := api.Scrapes(ctx)
	if err != nil {
		add("metrics API answers and reaches Prometheus", sdk.StatusFail, err.Error(),
			fmt.Sprintf("kubectl -n %s logs deploy/metrics-api; kubectl -n %s get pods", vizNS, vizNS))
		return []sdk.CheckCategory{cat}
	}
	add("metrics API answers and reaches Prometheus", sdk.StatusOK, "", "")
	switch {
	case s.Targets == 0:
		add("Prometheus scrapes the proxies", sdk.StatusWarn, "no meshed pod found yet", "mesh some workloads (conduit.dev/inject=enabled)")
	case s.Up < s.Targets:
		add(fmt.Sprintf("Prometheus scrapes the proxies (%d of %d up)", s.Up, s.Targets), sdk.StatusWarn,
			fmt.Sprintf("%d of %d proxies' admin port 4191 cannot be scraped", s.Targets-s.Up, s.Targets), "check the pods' proxies: mesh check --proxy")
	default:
		add(fmt.Sprintf("Prometheus scrapes the proxies (%d up)", s.Up), sdk.StatusOK, "", "")
	}
	return []sdk.CheckCategory{cat}
}

func available(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == "True" {
			return d.Status.AvailableReplicas > 0 || (d.Spec.Replicas != nil && *d.Spec.Replicas == 0)
		}
	}
	return false
}
