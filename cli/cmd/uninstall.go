package cmd

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/conduit-mesh/conduit/charts"
	"github.com/conduit-mesh/conduit/cli/render"
	sdkchart "github.com/conduit-mesh/conduit/plugin-sdk/chart"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels uninstall looks for.
const (
	extensionLabel      = "conduit.dev/extension"
	controlPlaneNSLabel = "conduit.dev/control-plane-ns"
)

func newUninstallCmd(o *Options) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "uninstall",
		Short: "Print the Conduit objects to delete, for kubectl delete",
		Long: `uninstall prints every object of the control plane and the CRDs, for
'kubectl delete -f -'. It refuses while extensions are installed (namespaces
labelled conduit.dev/extension) or meshed pods remain, unless --force.`,
		Example: `  mesh uninstall | kubectl delete -f -`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns := o.controlPlaneNS()
			if !force {
				k, err := o.Kube()
				if err != nil {
					return fmt.Errorf("uninstall: %w (or pass --force to print the objects without checking)", err)
				}
				if err := uninstallChecks(cmd.Context(), k, ns); err != nil {
					return err
				}
			}
			out, err := uninstallYAML(ns)
			if err != nil {
				return err
			}
			_, err = o.Out.Write(out)
			return err
		},
	}
	c.Flags().BoolVar(&force, "force", false, "print the objects even while extensions or meshed pods remain")
	return c
}

func uninstallChecks(ctx context.Context, k *Kube, ns string) error {
	nss, err := k.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: extensionLabel})
	if err != nil {
		return fmt.Errorf("uninstall: list extension namespaces: %w (check --kubeconfig and --context)", err)
	}
	var exts []string
	for _, n := range nss.Items {
		exts = append(exts, fmt.Sprintf("%s (namespace %s)", n.Labels[extensionLabel], n.Name))
	}
	if len(exts) > 0 {
		slices.Sort(exts)
		return fmt.Errorf("uninstall: extensions are still installed: %s; uninstall each first with 'mesh <extension> uninstall | kubectl delete -f -', or pass --force", strings.Join(exts, ", "))
	}
	pods, err := k.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: controlPlaneNSLabel + "=" + ns})
	if err != nil {
		return fmt.Errorf("uninstall: list meshed pods: %w", err)
	}
	var meshed []string
	for _, p := range pods.Items {
		if p.Namespace == ns || p.DeletionTimestamp != nil {
			continue
		}
		meshed = append(meshed, p.Namespace+"/"+p.Name)
	}
	if len(meshed) > 0 {
		slices.Sort(meshed)
		shown := meshed
		if len(shown) > 10 {
			shown = append(slices.Clone(shown[:10]), fmt.Sprintf("and %d more", len(meshed)-10))
		}
		return fmt.Errorf("uninstall: %d meshed pods remain: %s; remove the conduit.dev/inject annotation and restart them (kubectl rollout restart), or delete them, or pass --force", len(meshed), strings.Join(shown, ", "))
	}
	return nil
}

// uninstallYAML lists every object of the control plane and the CRDs, in
// reverse install order, as minimal documents for kubectl delete.
func uninstallYAML(ns string) ([]byte, error) {
	f := &installFlags{}
	user := map[string]any{"controlPlaneNamespace": ns}
	if err := f.identityMaterial(user, true); err != nil {
		return nil, err
	}
	cp, err := render.Render(charts.ControlPlane, user, ns)
	if err != nil {
		return nil, fmt.Errorf("uninstall: %w", err)
	}
	crds, err := render.Render(charts.CRDs, nil, ns)
	if err != nil {
		return nil, fmt.Errorf("uninstall: %w", err)
	}
	return sdkchart.UninstallYAML(append(crds, cp...)), nil
}
