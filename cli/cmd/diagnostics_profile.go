package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
)

// newDiagnosticsProfileCmd returns `mesh diagnostics profile`: what the
// destination service tells a proxy about an authority's traffic.
func newDiagnosticsProfileCmd(o *Options) *cobra.Command {
	var output string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "profile AUTHORITY",
		Short: "Print what the destination service tells a proxy about an authority: opaque or not, routes, retries, split",
		Long: `profile port-forwards to a destination pod of the control plane (port 8086), asks it
for AUTHORITY's profile as a proxy would (GetProfile) and prints the first answer:
  - opaque: whether a client's proxy skips protocol detection on the port (it must, for a
    protocol whose server speaks first, or the connection waits for the client);
  - the routes of the ServiceProfile (condition, timeout, retryable, failure classes);
  - the retry budget, the traffic split, and for a pod's address the pod itself.
With -n, the profile as a proxy in that namespace sees it (a ServiceProfile in the
client's namespace overrides the Service's). AUTHORITY is
"<service>.<namespace>.svc.<cluster-domain>:<port>" or "<ip>:<port>".`,
		Example: `  mesh diagnostics profile mysql.shop.svc.cluster.local:3306
  mesh diagnostics profile web.emojivoto.svc.cluster.local:80 -n canary -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("diagnostics profile: -o %q: accepted: table, json", output)
			}
			if err := checkTimeout("diagnostics profile", "timeout", timeout); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			p, err := fetchProfile(ctx, o, args[0], o.Namespace, timeout)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeProfileJSON(cmd.OutOrStdout(), args[0], o.Namespace, p)
			}
			return writeProfileTable(cmd.OutOrStdout(), args[0], p)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the destination service")
	return c
}

// fetchProfile returns the first GetProfile message for authority, asked
// as a proxy in clientNS would (none: without a context token); timeout is
// the --timeout that bounds ctx.
func fetchProfile(ctx context.Context, o *Options, authority, clientNS string, timeout time.Duration) (*destinationv1.DestinationProfile, error) {
	conn, stop, err := dialDestination(ctx, o, "diagnostics profile")
	if err != nil {
		return nil, err
	}
	defer stop()
	req := &destinationv1.GetDestination{Path: authority}
	if clientNS != "" {
		tok, _ := json.Marshal(map[string]string{"ns": clientNS})
		req.ContextToken = string(tok)
	}
	stream, err := destinationv1.NewDestinationClient(conn).GetProfile(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("diagnostics profile: GetProfile %s: %w", authority, destinationRPCError(authority, timeout, err))
	}
	p, err := stream.Recv()
	if err != nil {
		err = recvError(ctx, err)
		return nil, fmt.Errorf("diagnostics profile: GetProfile %s: %w", authority, destinationRPCError(authority, timeout, err))
	}
	return p, nil
}

func writeProfileTable(w io.Writer, authority string, p *destinationv1.DestinationProfile) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "AUTHORITY\t%s\n", authority)
	switch {
	case p.GetFullyQualifiedName() != "":
		fmt.Fprintf(tw, "SERVICE\t%s\n", p.GetFullyQualifiedName())
	case p.GetEndpoint() != nil:
		fmt.Fprintf(tw, "SERVICE\t- (a pod's address)\n")
	default:
		fmt.Fprintf(tw, "SERVICE\t- (not known to the destination service: the proxy forwards to the original destination)\n")
	}
	if p.GetOpaqueProtocol() {
		fmt.Fprintf(tw, "OPAQUE\tyes: the client's proxy relays TCP without detecting the protocol\n")
	} else {
		fmt.Fprintf(tw, "OPAQUE\tno: the client's proxy detects the protocol from the client's first bytes\n")
	}
	if rb := p.GetRetryBudget(); rb != nil {
		fmt.Fprintf(tw, "RETRY BUDGET\tretries up to %.4g%% of requests, at least %d/s, over %s\n", float64(rb.GetRetryRatio())*100, rb.GetMinRetriesPerSecond(), rb.GetTtl().AsDuration())
	}
	if ds := p.GetDstOverrides(); len(ds) > 0 {
		var total uint64
		for _, d := range ds {
			total += uint64(d.GetWeight())
		}
		parts := make([]string, len(ds))
		for i, d := range ds {
			parts[i] = fmt.Sprintf("%s %d%%", d.GetAuthority(), uint64(d.GetWeight())*100/max(total, 1))
		}
		fmt.Fprintf(tw, "TRAFFIC SPLIT\t%s\n", strings.Join(parts, ", "))
	}
	if ep := p.GetEndpoint(); ep != nil {
		fmt.Fprintf(tw, "ENDPOINT\t%s:%d pod %s, identity %s\n", ep.GetAddr().GetIp(), ep.GetAddr().GetPort(),
			epDash(ep.GetMetricLabels()["pod"]), epDash(ep.GetTlsIdentity().GetDnsLikeIdentity()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(p.GetRoutes()) == 0 {
		_, err := fmt.Fprintln(w, "No routes: every request counts as the route \"\" (no ServiceProfile, or none with routes).")
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tCONDITION\tTIMEOUT\tRETRYABLE\tFAILURES")
	for _, r := range p.GetRoutes() {
		timeout := "-"
		if r.GetTimeout() != nil {
			timeout = r.GetTimeout().AsDuration().String()
		}
		retryable := "no"
		if r.GetIsRetryable() {
			retryable = "yes"
		}
		failures := "5xx, gRPC status not OK (default)"
		if len(r.GetResponseClasses()) > 0 {
			var fs []string
			for _, c := range r.GetResponseClasses() {
				kind := "success"
				if c.GetIsFailure() {
					kind = "failure"
				}
				fs = append(fs, kind+" if "+responseMatchString(c.GetCondition()))
			}
			failures = strings.Join(fs, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", epDash(r.GetMetricsLabels()["route"]), requestMatchString(r.GetCondition()), timeout, retryable, failures)
	}
	return tw.Flush()
}

// requestMatchString renders a route's condition: "GET and path ~ /api/.*".
func requestMatchString(m *destinationv1.RequestMatch) string {
	switch x := m.GetMatch().(type) {
	case *destinationv1.RequestMatch_Method:
		return x.Method
	case *destinationv1.RequestMatch_Path:
		return "path ~ " + x.Path.GetRegex()
	case *destinationv1.RequestMatch_Not:
		return "not " + requestMatchString(x.Not)
	case *destinationv1.RequestMatch_All:
		return joinMatches(x.All.GetMatches(), " and ", requestMatchString)
	case *destinationv1.RequestMatch_Any:
		return joinMatches(x.Any.GetMatches(), " or ", requestMatchString)
	}
	return "any request"
}

// responseMatchString renders a response class's condition: "status 500-599".
func responseMatchString(m *destinationv1.ResponseMatch) string {
	switch x := m.GetMatch().(type) {
	case *destinationv1.ResponseMatch_Status:
		if x.Status.GetMin() == x.Status.GetMax() {
			return fmt.Sprintf("status %d", x.Status.GetMin())
		}
		return fmt.Sprintf("status %d-%d", x.Status.GetMin(), x.Status.GetMax())
	case *destinationv1.ResponseMatch_Not:
		return "not " + responseMatchString(x.Not)
	case *destinationv1.ResponseMatch_All:
		return joinMatches(x.All.GetMatches(), " and ", responseMatchString)
	case *destinationv1.ResponseMatch_Any:
		return joinMatches(x.Any.GetMatches(), " or ", responseMatchString)
	}
	return "any response"
}

func joinMatches[M any](ms []M, sep string, str func(M) string) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = str(m)
		if len(ms) > 1 && (strings.Contains(parts[i], " and ") || strings.Contains(parts[i], " or ")) {
			parts[i] = "(" + parts[i] + ")"
		}
	}
	return strings.Join(parts, sep)
}

func writeProfileJSON(w io.Writer, authority, clientNS string, p *destinationv1.DestinationProfile) error {
	raw, err := protojson.Marshal(p)
	if err != nil {
		return fmt.Errorf("diagnostics profile: %w", err)
	}
	// protojson varies its spacing on purpose; compact it, the encoder indents.
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return fmt.Errorf("diagnostics profile: %w", err)
	}
	out := struct {
		Authority       string          `json:"authority"`
		ClientNamespace string          `json:"clientNamespace,omitempty"`
		Opaque          bool            `json:"opaque"`
		Profile         json.RawMessage `json:"profile"`
	}{authority, clientNS, p.GetOpaqueProtocol(), compact.Bytes()}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
