package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/conduit-mesh/conduit/pkg/subnets"
	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// destinationGRPCPort is the destination service's gRPC port (docs/architecture.md).
const destinationGRPCPort = 8086

// newDiagnosticsEndpointsCmd returns `mesh diagnostics endpoints`: what the
// destination service sends a proxy for an authority.
func newDiagnosticsEndpointsCmd(o *Options) *cobra.Command {
	var output string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "endpoints AUTHORITY",
		Short: "Print the endpoints the destination service sends a proxy for an authority",
		Long: `endpoints port-forwards to a destination pod of the control plane (port 8086), asks it
for AUTHORITY as a proxy would (Get) and prints the first answer: every endpoint with its
pod, identity, protocol hint and zone. AUTHORITY is "<service>.<namespace>.svc.<cluster-domain>:<port>",
a pod of a headless Service ("<pod>.<service>.<namespace>.svc.<cluster-domain>:<port>"),
or "<ip>:<port>".`,
		Example: `  mesh diagnostics endpoints web.emojivoto.svc.cluster.local:80
  mesh diagnostics endpoints 10.42.0.12:8080 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("diagnostics endpoints: -o %q: accepted: table, json", output)
			}
			if err := checkTimeout("diagnostics endpoints", "timeout", timeout); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			u, err := fetchEndpoints(ctx, o, args[0], timeout)
			if err != nil {
				return err
			}
			networks := outsideClusterNetworks(ctx, o, args[0])
			if output == "json" {
				return writeEndpointsJSON(cmd.OutOrStdout(), args[0], u, networks != "")
			}
			if err := writeEndpointsTable(cmd.OutOrStdout(), args[0], u); err != nil || networks == "" {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Note: %s is outside the cluster networks (%s): proxies send to it directly and never ask the destination service, so the answer above does not apply to them (docs/proxy.md, Cluster networks).\n",
				args[0], networks)
			return err
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the destination service")
	return c
}

// fetchEndpoints returns the first Get message for authority; timeout is
// the --timeout that bounds ctx (for the error that says it ran out).
func fetchEndpoints(ctx context.Context, o *Options, authority string, timeout time.Duration) (*destinationv1.Update, error) {
	conn, stop, err := dialDestination(ctx, o, "diagnostics endpoints")
	if err != nil {
		return nil, err
	}
	defer stop()
	stream, err := destinationv1.NewDestinationClient(conn).Get(ctx, &destinationv1.GetDestination{Path: authority})
	if err != nil {
		return nil, fmt.Errorf("diagnostics endpoints: Get %s: %w", authority, destinationRPCError(authority, timeout, err))
	}
	u, err := stream.Recv()
	if err != nil {
		err = recvError(ctx, err)
		return nil, fmt.Errorf("diagnostics endpoints: Get %s: %w", authority, destinationRPCError(authority, timeout, err))
	}
	return u, nil
}

// recvError is the error of a stream's first Recv. The server's end of the
// stream shares the client's deadline: when it returns at that deadline, the
// client may read the end of the stream (io.EOF) before its own deadline
// error, and the deadline is then the cause. The server's deadline is the
// client's, carried over (grpc-timeout) and started when its request
// arrived, so it never ends first: by the time its end is read, the client's
// deadline has passed, even when the context's timer has yet to say so.
func recvError(ctx context.Context, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return status.FromContextError(context.DeadlineExceeded).Err()
	}
	return errors.New("the stream ended without a message")
}

// dialDestination port-forwards to a running destination pod of the control
// plane and connects to its gRPC port; stop closes both. what prefixes errors.
func dialDestination(ctx context.Context, o *Options, what string) (conn *grpc.ClientConn, stop func(), err error) {
	k, err := o.Kube()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	ns := o.ControlPlaneNamespace
	pods, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "conduit.dev/control-plane-component=destination"})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: list destination pods in %s: %w", what, ns, err)
	}
	var pod string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			pod = p.Name
			break
		}
	}
	if pod == "" {
		return nil, nil, fmt.Errorf("%s: no running destination pod in namespace %s (is the control plane installed? try 'mesh check')", what, ns)
	}
	addr, stopForward, err := portForward(ctx, k, ns, pod, destinationGRPCPort)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	// The port-forward reaches the destination container itself, behind its proxy: plaintext.
	conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		stopForward()
		return nil, nil, fmt.Errorf("%s: connect to %s: %w", what, addr, err)
	}
	return conn, func() { conn.Close(); stopForward() }, nil
}

// rpcError is a failed call to the destination service told as a sentence
// that says what to do; the gRPC status stays wrapped for errors.As and
// status.FromError.
type rpcError struct {
	msg   string
	cause error
}

func (e *rpcError) Error() string { return e.msg }
func (e *rpcError) Unwrap() error { return e.cause }

// destinationRPCError turns a gRPC status from the destination service
// ("rpc error: code = Unavailable desc = ...") into an rpcError; other
// errors are returned as they are. timeout is the command's --timeout.
func destinationRPCError(authority string, timeout time.Duration, err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return err
	}
	detail := st.Message()
	if rest, found := strings.CutPrefix(detail, "connection error: desc = "); found {
		if unq, uerr := strconv.Unquote(rest); uerr == nil {
			rest = unq
		}
		detail = rest
	}
	var msg string
	switch st.Code() {
	case codes.Unavailable:
		msg = fmt.Sprintf("the destination service is unavailable (%s): check that the destination pods of the control plane are running and ready with 'mesh check', then retry", detail)
	case codes.DeadlineExceeded:
		msg = fmt.Sprintf("no answer from the destination service within %s: retry with a longer --timeout, and check the control plane with 'mesh check'", timeout)
	case codes.Canceled:
		msg = "interrupted before the destination service answered"
	case codes.InvalidArgument:
		msg = fmt.Sprintf("the destination service refused the authority %q: %s (expected <service>.<namespace>.svc.<cluster-domain>:<port>, or <ip>:<port>)", authority, detail)
	case codes.Unimplemented:
		msg = fmt.Sprintf("the destination service does not serve this request (%s): is the control plane older than this CLI? Compare the versions with 'mesh version' and upgrade it with 'mesh upgrade'", detail)
	case codes.PermissionDenied, codes.Unauthenticated:
		msg = fmt.Sprintf("the destination service refused the request: %s", detail)
	default:
		msg = fmt.Sprintf("the destination service failed (%s): %s; check the control plane with 'mesh check' and the logs of its destination pods", st.Code(), detail)
	}
	return &rpcError{msg: msg, cause: err}
}

// endpointRow is one endpoint as printed (also the JSON form).
type endpointRow struct {
	IP           string            `json:"ip"`
	Port         uint32            `json:"port"`
	Weight       uint32            `json:"weight"`
	Namespace    string            `json:"namespace,omitempty"`
	Pod          string            `json:"pod,omitempty"`
	Identity     string            `json:"identity,omitempty"`
	ProtocolHint string            `json:"protocolHint,omitempty"`
	InboundPort  uint32            `json:"inboundPort,omitempty"`
	Zone         string            `json:"zone,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

func endpointRows(u *destinationv1.Update) []endpointRow {
	add := u.GetAdd()
	if add == nil {
		return nil
	}
	rows := make([]endpointRow, 0, len(add.Addrs))
	for _, a := range add.Addrs {
		r := endpointRow{
			IP: a.GetAddr().GetIp(), Port: a.GetAddr().GetPort(), Weight: a.GetWeight(),
			Namespace: add.GetMetricLabels()["namespace"], Pod: a.GetMetricLabels()["pod"],
			Identity: a.GetTlsIdentity().GetDnsLikeIdentity(), Zone: a.GetMetricLabels()["zone"],
			Labels: a.GetMetricLabels(), Metadata: a.GetMetadata(),
		}
		switch {
		case a.GetProtocolHint().GetH2() != nil:
			r.ProtocolHint = "h2"
		case a.GetProtocolHint().GetOpaque() != nil:
			r.ProtocolHint = "opaque"
			r.InboundPort = a.GetProtocolHint().GetInboundPort()
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].IP != rows[j].IP {
			return rows[i].IP < rows[j].IP
		}
		return rows[i].Port < rows[j].Port
	})
	return rows
}

func writeEndpointsTable(w io.Writer, authority string, u *destinationv1.Update) error {
	if ne := u.GetNoEndpoints(); ne != nil || u.GetAdd() == nil {
		if ne.GetExists() {
			_, err := fmt.Fprintf(w, "No endpoints: %s exists but has no ready endpoints.\n", authority)
			return err
		}
		_, err := fmt.Fprintf(w, "No endpoints: %s is not known to the destination service (the proxy forwards such traffic to its original destination).\n", authority)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tIP\tPORT\tPOD\tIDENTITY\tPROTOCOL\tZONE\tWEIGHT")
	for _, r := range endpointRows(u) {
		hint := epDash(r.ProtocolHint)
		if r.InboundPort != 0 {
			hint = fmt.Sprintf("%s:%d", r.ProtocolHint, r.InboundPort)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\n", epDash(r.Namespace), r.IP, r.Port, epDash(r.Pod), epDash(r.Identity), hint, epDash(r.Zone), r.Weight)
	}
	return tw.Flush()
}

func epDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

// outsideClusterNetworks returns the proxies' cluster networks when
// authority is an "ip:port" outside them, else "" (also when they cannot be
// read).
func outsideClusterNetworks(ctx context.Context, o *Options, authority string) string {
	ap, err := netip.ParseAddrPort(authority)
	if err != nil {
		return ""
	}
	k, err := o.Kube()
	if err != nil {
		return ""
	}
	value, nets, err := clusterNetworksOf(ctx, k.Client, o.ControlPlaneNamespace)
	if err != nil || subnets.Contains(nets, ap.Addr()) {
		return ""
	}
	return value
}

// writeEndpointsJSON writes the answer u for authority; outside says that
// authority is an address outside the cluster networks.
func writeEndpointsJSON(w io.Writer, authority string, u *destinationv1.Update, outside bool) error {
	out := struct {
		Authority string        `json:"authority"`
		Exists    bool          `json:"exists"`
		Endpoints []endpointRow `json:"endpoints"`
		// OutsideClusterNetworks: proxies never ask about it.
		OutsideClusterNetworks bool `json:"outsideClusterNetworks,omitempty"`
	}{Authority: authority, Endpoints: endpointRows(u), OutsideClusterNetworks: outside}
	out.Exists = u.GetAdd() != nil || u.GetNoEndpoints().GetExists()
	if out.Endpoints == nil {
		out.Endpoints = []endpointRow{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
