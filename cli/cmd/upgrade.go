package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/chartutil"
)

func newUpgradeCmd(o *Options) *cobra.Command {
	f := &installFlags{}
	var crds bool
	c := &cobra.Command{
		Use:   "upgrade",
		Short: "Print the manifests of the installed control plane, upgraded to this CLI's version",
		Long: `upgrade reads the settings given to 'mesh install' (ConfigMap conduit-config,
key install) and the identity material from the cluster, applies the flags
given now on top, and prints the control plane's manifests for kubectl apply.
The trust anchors and the issuer are kept unless new files are given.

Meshed workloads keep running; they pick up a new proxy version when they are
next restarted (kubectl rollout restart).`,
		Example: `  mesh upgrade --crds | kubectl apply -f -
  mesh upgrade | kubectl apply -f -
  mesh upgrade --proxy-log-level debug | kubectl apply -f -
  mesh upgrade --set proxy.discovery.lastKnownMaxAge=4h | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if crds {
				return renderCRDs(o)
			}
			k, err := o.Kube()
			if err != nil {
				return fmt.Errorf("upgrade: %w", err)
			}
			ns := o.controlPlaneNS()
			stored, anchors, issuer, err := readInstalled(cmd.Context(), k, ns)
			if err != nil {
				return err
			}
			ov, err := f.overrides(cmd.Flags(), o)
			if err != nil {
				return err
			}
			given, err := ov.Merge()
			if err != nil {
				return fmt.Errorf("upgrade: %w", err)
			}
			// The flags given now win over the stored settings.
			user := chartutil.MergeTables(given, stored)
			if f.trustAnchorsFile == "" && getPath(user, "identity.trustAnchorsPEM") == nil {
				if anchors == "" {
					return fmt.Errorf("upgrade: the ConfigMap %s/%s has no %s: pass --identity-trust-anchors-file", ns, trustRootsName, trustRootsKey)
				}
				setPath(user, "identity.trustAnchorsPEM", anchors)
			}
			external, _ := getPath(user, "identity.externalIssuer").(bool)
			if !external && f.issuerCertFile == "" && getPath(user, "identity.issuer.crtPEM") == nil {
				if issuer == nil || len(issuer.Data["tls.crt"]) == 0 || len(issuer.Data["tls.key"]) == 0 {
					return fmt.Errorf("upgrade: the issuer Secret %s/%s is missing or incomplete: pass --identity-issuer-certificate-file and --identity-issuer-key-file, or --identity-external-issuer", ns, issuerSecretName)
				}
				setPath(user, "identity.issuer.crtPEM", string(issuer.Data["tls.crt"]))
				setPath(user, "identity.issuer.keyPEM", string(issuer.Data["tls.key"]))
			}
			return renderControlPlane(o, f, user, false)
		},
	}
	c.Flags().BoolVar(&crds, "crds", false, "print the CustomResourceDefinitions only (upgrade them first)")
	f.register(c.Flags())
	_ = c.Flags().MarkHidden("ignore-cluster")
	return c
}
