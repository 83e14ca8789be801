package cmd

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/spf13/cobra"
)

// proxyCertificatePath is where a proxy's admin server serves its current
// leaf certificate chain as PEM (leaf first), see docs/identity.md.
const proxyCertificatePath = "/identity/certificate"

// identityNow is the clock of `mesh identity` (tests pin it).
var identityNow = time.Now

func newIdentityCmd(o *Options) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "identity POD",
		Short: "Show the certificate a pod's proxy holds, and rotate the trust anchors",
		Long: `identity port-forwards to the proxy admin port (4191) of POD and shows the
certificate the proxy currently holds: subject, SANs, issuer, validity, and
whether it chains to the trust anchors of the control plane.

` + podRefHelp + `
With a workload, each pod's certificate is shown in turn; with -o json, a list
of them (one pod's report stays a single object); -o pem takes one pod.

'mesh identity rotate-anchors' moves a live mesh from one trust anchor to
another without failing a request (see 'mesh identity rotate-anchors --help').`,
		Example: `  mesh identity -n emojivoto web-5d8c7b9f4-x2kq7
  mesh identity -n emojivoto deploy/web
  mesh identity -n emojivoto web-5d8c7b9f4-x2kq7 -o pem | openssl x509 -noout -text`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "pem" && output != "json" {
				return fmt.Errorf("identity: unknown output %q (accepted: text, json, pem)", output)
			}
			ctx := cmd.Context()
			k, ref, err := o.proxyPods(ctx, "identity", args[0])
			if err != nil {
				return err
			}
			ns := ref.ns
			if output == "pem" && len(ref.pods) > 1 {
				return fmt.Errorf("identity: -o pem prints the chain of one pod, and %s has %d (%s): name one", ref.arg, len(ref.pods), strings.Join(ref.pods, ", "))
			}
			var anchors []*x509.Certificate
			var anchorsErr error
			if output != "pem" {
				_, anchors, anchorsErr = readTrustBundle(ctx, k.Client, o.controlPlaneNS())
			}
			var reports []certReport
			err = ref.each(func(_ int, pod string) error {
				pemChain, err := fetchProxyCertificate(ctx, k, ns, pod)
				if err != nil {
					return fmt.Errorf("identity: %w (is %s/%s meshed and its proxy ready? 'mesh check --proxy -n %s')", err, ns, pod, ns)
				}
				if output == "pem" {
					_, err := o.Out.Write(pemChain)
					return err
				}
				chain, err := pki.ParseCertificates(pemChain)
				if err != nil {
					return fmt.Errorf("identity: the proxy of %s/%s served an unreadable certificate: %w", ns, pod, err)
				}
				report := describeChain(ns+"/"+pod, chain, anchors, anchorsErr, identityNow())
				if output == "json" {
					reports = append(reports, report)
					return nil
				}
				if len(reports) > 0 {
					fmt.Fprintln(o.Out)
				}
				reports = append(reports, report)
				return report.write(o.Out)
			})
			if output == "json" && (len(reports) > 0 || ref.workload) {
				enc := json.NewEncoder(o.Out)
				enc.SetIndent("", "  ")
				var v any = reports
				if !ref.workload {
					v = reports[0] // one pod: its report, not a list
				} else if reports == nil {
					v = []certReport{}
				}
				if jerr := enc.Encode(v); jerr != nil {
					return jerr
				}
			}
			return err
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json, or pem (the chain as the proxy serves it)")
	c.AddCommand(newRotateAnchorsCmd(o))
	return c
}

// fetchProxyCertificate reads GET /identity/certificate on the pod's proxy admin port.
func fetchProxyCertificate(ctx context.Context, k *Kube, ns, pod string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addr, stop, err := portForward(ctx, k, ns, pod, proxyAdminPort)
	if err != nil {
		return nil, err
	}
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+proxyCertificatePath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s on %s/%s:%d: %w", proxyCertificatePath, ns, pod, proxyAdminPort, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s of %s/%s: %w", proxyCertificatePath, ns, pod, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusServiceUnavailable:
		return nil, fmt.Errorf("the proxy of %s/%s has no certificate yet: %s", ns, pod, strings.TrimSpace(string(body)))
	}
	return nil, fmt.Errorf("GET %s on %s/%s:%d: %s", proxyCertificatePath, ns, pod, proxyAdminPort, resp.Status)
}

// certReport is what `mesh identity POD` prints.
type certReport struct {
	Pod          string    `json:"pod"`
	Subject      string    `json:"subject"`
	DNSNames     []string  `json:"dnsNames"`
	OtherSANs    []string  `json:"otherSANs,omitempty"`
	Issuer       string    `json:"issuer"`
	Serial       string    `json:"serial"`
	Key          string    `json:"key"`
	NotBefore    time.Time `json:"notBefore"`
	NotAfter     time.Time `json:"notAfter"`
	ExpiresIn    string    `json:"expiresIn"`
	Chain        []string  `json:"chain"`
	Trusted      bool      `json:"trusted"`
	TrustDetail  string    `json:"trustDetail"`
	IssuerSHA256 string    `json:"issuerSHA256,omitempty"`
}

func describeChain(pod string, chain []*x509.Certificate, anchors []*x509.Certificate, anchorsErr error, now time.Time) certReport {
	leaf := chain[0]
	r := certReport{
		Pod: pod, Subject: leaf.Subject.String(), DNSNames: leaf.DNSNames, Issuer: leaf.Issuer.String(),
		Serial: leaf.SerialNumber.Text(16), Key: keyName(leaf.PublicKey),
		NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(),
	}
	for _, ip := range leaf.IPAddresses {
		r.OtherSANs = append(r.OtherSANs, "IP:"+ip.String())
	}
	for _, u := range leaf.URIs {
		r.OtherSANs = append(r.OtherSANs, "URI:"+u.String())
	}
	for _, c := range chain {
		r.Chain = append(r.Chain, c.Subject.String())
	}
	if left := leaf.NotAfter.Sub(now); left > 0 {
		r.ExpiresIn = left.Round(time.Minute).String()
	} else {
		r.ExpiresIn = "expired " + (-left).Round(time.Minute).String() + " ago"
	}
	if len(chain) > 1 {
		sum := sha256.Sum256(chain[1].Raw)
		r.IssuerSHA256 = hex.EncodeToString(sum[:])
	}
	switch {
	case anchorsErr != nil:
		r.TrustDetail = "unknown: " + anchorsErr.Error()
	default:
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		for _, a := range anchors {
			roots.AddCert(a)
		}
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		if len(leaf.DNSNames) > 0 {
			opts.DNSName = leaf.DNSNames[0]
		}
		paths, err := leaf.Verify(opts)
		if err != nil {
			r.TrustDetail = "no: " + err.Error()
		} else {
			path := paths[0]
			r.Trusted = true
			r.TrustDetail = fmt.Sprintf("yes, chains to trust anchor %q (one of %d in the bundle)", path[len(path)-1].Subject.CommonName, len(anchors))
		}
	}
	return r
}

func (r certReport) write(w io.Writer) error {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "%-12s %s\n", k+":", v) }
	row("Pod", r.Pod)
	row("Subject", r.Subject)
	row("DNS SANs", strings.Join(r.DNSNames, ", "))
	if len(r.OtherSANs) > 0 {
		row("Other SANs", strings.Join(r.OtherSANs, ", "))
	}
	row("Issuer", r.Issuer)
	row("Serial", r.Serial)
	row("Key", r.Key)
	row("Not before", r.NotBefore.Format(time.RFC3339))
	row("Not after", r.NotAfter.Format(time.RFC3339)+" ("+r.ExpiresIn+")")
	row("Chain", strings.Join(r.Chain, " → ")+" (leaf first)")
	row("Trusted", r.TrustDetail)
	_, err := io.WriteString(w, b.String())
	return err
}

func keyName(k any) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", k)
}
