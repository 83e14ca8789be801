package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeDestination answers Get and GetProfile with one canned message per
// authority (GetProfile's per authority and client namespace, "auth@ns").
type fakeDestination struct {
	destinationv1.UnimplementedDestinationServer
	answers  map[string]*destinationv1.Update
	profiles map[string]*destinationv1.DestinationProfile
}

func (f *fakeDestination) GetProfile(req *destinationv1.GetDestination, s grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	key := req.GetPath()
	if tok := req.GetContextToken(); tok != "" {
		var t struct{ NS string }
		if err := json.Unmarshal([]byte(tok), &t); err != nil {
			return status.Error(codes.InvalidArgument, "bad context token")
		}
		key += "@" + t.NS
	}
	p, ok := f.profiles[key]
	if !ok {
		return status.Error(codes.InvalidArgument, "destination: malformed authority")
	}
	if err := s.Send(p); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (f *fakeDestination) Get(req *destinationv1.GetDestination, s grpc.ServerStreamingServer[destinationv1.Update]) error {
	u, ok := f.answers[req.GetPath()]
	if !ok {
		return status.Error(codes.InvalidArgument, "destination: malformed authority")
	}
	if err := s.Send(u); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func startFakeDestination(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	destinationv1.RegisterDestinationServer(g, &fakeDestination{profiles: fakeProfiles(), answers: map[string]*destinationv1.Update{
		"web.emojivoto.svc.cluster.local:80": {Update: &destinationv1.Update_Add{Add: &destinationv1.WeightedAddrSet{
			MetricLabels: map[string]string{"namespace": "emojivoto", "service": "web"},
			Addrs: []*destinationv1.WeightedAddr{
				{
					Addr: &destinationv1.TcpAddress{Ip: "10.0.0.2", Port: 8080}, Weight: 10000,
					MetricLabels: map[string]string{"pod": "web-2", "zone": "zone-a"},
					TlsIdentity:  &destinationv1.TlsIdentity{DnsLikeIdentity: "web.emojivoto.serviceaccount.identity.conduit.cluster.local"},
					ProtocolHint: &destinationv1.ProtocolHint{Protocol: &destinationv1.ProtocolHint_Opaque_{Opaque: &destinationv1.ProtocolHint_Opaque{}}, InboundPort: 4143},
				},
				{
					Addr: &destinationv1.TcpAddress{Ip: "10.0.0.1", Port: 8080}, Weight: 10000,
					MetricLabels: map[string]string{"pod": "web-1", "zone": "zone-a"},
					TlsIdentity:  &destinationv1.TlsIdentity{DnsLikeIdentity: "web.emojivoto.serviceaccount.identity.conduit.cluster.local"},
					ProtocolHint: &destinationv1.ProtocolHint{Protocol: &destinationv1.ProtocolHint_H2_{H2: &destinationv1.ProtocolHint_H2{}}},
				},
				{Addr: &destinationv1.TcpAddress{Ip: "10.0.0.9", Port: 8080}, Weight: 10000},
			},
		}}},
		"empty.emojivoto.svc.cluster.local:80": {Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: true}}},
		"nope.emojivoto.svc.cluster.local:80":  {Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{}}},
		// Addresses that are not a pod: the original destination.
		"192.0.2.7:443": {Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{}}},
		"10.0.0.9:80":   {Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{}}},
	}})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// runEndpoints runs `diagnostics endpoints` against a fake cluster whose
// destination pod is port-forwarded to addr.
func runEndpoints(t *testing.T, addr string, pods []corev1.Pod, args ...string) (string, error) {
	t.Helper()
	return runDestinationCmd(t, addr, pods, "", newDiagnosticsEndpointsCmd, args...)
}

// runDestinationCmd runs a command that asks the destination service, in a
// fake cluster (with pods, -n namespace when set) whose destination pod is
// port-forwarded to addr; it checks the pod port-forwarded to.
func runDestinationCmd(t *testing.T, addr string, pods []corev1.Pod, namespace string, newCmd func(*Options) *cobra.Command, args ...string) (string, error) {
	t.Helper()
	k, _ := fakeKube(false)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: configMapName, Namespace: "conduit"}, Data: map[string]string{"values": "proxy: {logLevel: info}\n"}}
	if _, err := k.Client.CoreV1().ConfigMaps("conduit").Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range pods {
		p := pods[i]
		if _, err := k.Client.CoreV1().Pods(p.Namespace).Create(context.Background(), &p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var forwardedTo string
	old := portForward
	portForward = func(_ context.Context, _ *Kube, ns, pod string, port int) (string, func(), error) {
		forwardedTo = fmt.Sprintf("%s/%s:%d", ns, pod, port)
		return addr, func() {}, nil
	}
	t.Cleanup(func() { portForward = old })
	var out bytes.Buffer
	o := &Options{Out: &out, Err: &out, Namespace: namespace, ControlPlaneNamespace: "conduit", NewKube: func() (*Kube, error) { return k, nil }}
	c := newCmd(o)
	c.SetArgs(args)
	c.SetOut(&out)
	c.SetErr(&out)
	err := c.ExecuteContext(context.Background())
	if err == nil && forwardedTo != "conduit/destination-1:8086" {
		t.Errorf("port-forwarded to %q, want conduit/destination-1:8086", forwardedTo)
	}
	return out.String(), err
}

func destinationPods() []corev1.Pod {
	pod := func(name string, phase corev1.PodPhase) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "conduit", Labels: map[string]string{"conduit.dev/control-plane-component": "destination"}},
			Status:     corev1.PodStatus{Phase: phase},
		}
	}
	return []corev1.Pod{pod("destination-0", corev1.PodPending), pod("destination-1", corev1.PodRunning)}
}

func TestDiagnosticsEndpoints(t *testing.T) {
	addr := startFakeDestination(t)
	tests := []struct {
		name, golden string
		args         []string
	}{
		{"table", "diagnostics_endpoints_table.golden", []string{"web.emojivoto.svc.cluster.local:80"}},
		{"json", "diagnostics_endpoints_json.golden", []string{"web.emojivoto.svc.cluster.local:80", "-o", "json"}},
		{"no ready endpoints", "diagnostics_endpoints_empty.golden", []string{"empty.emojivoto.svc.cluster.local:80"}},
		{"unknown", "diagnostics_endpoints_unknown.golden", []string{"nope.emojivoto.svc.cluster.local:80"}},
		{"unknown json", "diagnostics_endpoints_unknown_json.golden", []string{"nope.emojivoto.svc.cluster.local:80", "-o", "json"}},
		// An address outside the (default) cluster networks: whatever the
		// destination service says, proxies never ask; one inside gets no
		// note.
		{"outside the cluster networks", "diagnostics_endpoints_outside.golden", []string{"192.0.2.7:443"}},
		{"outside the cluster networks json", "diagnostics_endpoints_outside_json.golden", []string{"192.0.2.7:443", "-o", "json"}},
		{"inside the cluster networks", "diagnostics_endpoints_inside.golden", []string{"10.0.0.9:80"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runEndpoints(t, addr, destinationPods(), tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, out)
		})
	}
}

// TestDiagnosticsDestinationErrors: both commands that ask the destination
// service say what went wrong, prefixed with their name.
func TestDiagnosticsDestinationErrors(t *testing.T) {
	addr := startFakeDestination(t)
	tests := []struct {
		name string
		pods []corev1.Pod
		args []string
		want string
	}{
		{"malformed authority", destinationPods(), []string{"bad:authority"}, "malformed authority"},
		{"no destination pod", nil, []string{"web.emojivoto.svc.cluster.local:80"}, "no running destination pod in namespace conduit"},
		{"bad output", destinationPods(), []string{"web.emojivoto.svc.cluster.local:80", "-o", "yaml"}, `-o "yaml"`},
	}
	for _, cmd := range []struct {
		name string
		new  func(*Options) *cobra.Command
	}{{"endpoints", newDiagnosticsEndpointsCmd}, {"profile", newDiagnosticsProfileCmd}} {
		for _, tc := range tests {
			t.Run(cmd.name+"/"+tc.name, func(t *testing.T) {
				_, err := runDestinationCmd(t, addr, tc.pods, "", cmd.new, tc.args...)
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "diagnostics "+cmd.name+": ") {
					t.Fatalf("err = %v, want it to start with %q and contain %q", err, "diagnostics "+cmd.name+": ", tc.want)
				}
			})
		}
	}
}

// hangingDestination accepts Get and GetProfile and never answers.
type hangingDestination struct {
	destinationv1.UnimplementedDestinationServer
}

func (hangingDestination) Get(_ *destinationv1.GetDestination, s grpc.ServerStreamingServer[destinationv1.Update]) error {
	<-s.Context().Done()
	return nil
}

func (hangingDestination) GetProfile(_ *destinationv1.GetDestination, s grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	<-s.Context().Done()
	return nil
}

// TestDiagnosticsDestinationRPCErrors: a failed call to the destination
// service reads as a sentence that says what to do, not as a raw gRPC status
// ("rpc error: code = Unavailable desc = ...").
func TestDiagnosticsDestinationRPCErrors(t *testing.T) {
	// Nothing listens behind the port-forward (the destination container is not serving).
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()

	lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	destinationv1.RegisterDestinationServer(g, hangingDestination{})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	hanging := lis.Addr().String()

	tests := []struct {
		name, addr string
		args       []string
		want       []string
	}{
		{"not serving", closed, []string{"web.emojivoto.svc.cluster.local:80"}, []string{"unavailable", "mesh check", "connection refused"}},
		{"no answer", hanging, []string{"web.emojivoto.svc.cluster.local:80", "--timeout", "300ms"}, []string{"no answer", "within 300ms", "--timeout"}},
		{"malformed authority", startFakeDestination(t), []string{"bad:authority"}, []string{`refused the authority "bad:authority"`, "malformed authority", "<service>.<namespace>.svc.<cluster-domain>:<port>"}},
	}
	for _, cmd := range []struct {
		name string
		new  func(*Options) *cobra.Command
	}{{"endpoints", newDiagnosticsEndpointsCmd}, {"profile", newDiagnosticsProfileCmd}} {
		for _, tc := range tests {
			t.Run(cmd.name+"/"+tc.name, func(t *testing.T) {
				_, err := runDestinationCmd(t, tc.addr, destinationPods(), "", cmd.new, tc.args...)
				if err == nil {
					t.Fatal("no error")
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "diagnostics "+cmd.name+": ") || strings.Contains(msg, "rpc error") || strings.Contains(msg, "code = ") {
					t.Errorf("err = %q: want the prefix %q and no raw gRPC status", msg, "diagnostics "+cmd.name+": ")
				}
				for _, w := range tc.want {
					if !strings.Contains(msg, w) {
						t.Errorf("err = %q, want it to contain %q", msg, w)
					}
				}
				if _, ok := status.FromError(err); !ok {
					t.Errorf("the gRPC status is not wrapped: %v", err)
				}
			})
		}
	}
}

// lateContext has a deadline whose timer has not fired yet: Err is nil.
type lateContext struct {
	context.Context
	deadline time.Time
}

func (c lateContext) Deadline() (time.Time, bool) { return c.deadline, true }

// TestRecvError: the server's end of a stream shares the client's deadline,
// so the client may read the stream's end (io.EOF) as its deadline passes;
// that is the deadline's error, not an empty answer.
func TestRecvError(t *testing.T) {
	expired, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	other := errors.New("boom")
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		code codes.Code
		want string
	}{
		{"end of stream at the deadline", expired, io.EOF, codes.DeadlineExceeded, ""},
		{"end of stream before it", context.Background(), io.EOF, codes.Unknown, "the stream ended without a message"},
		{"another error", expired, other, codes.Unknown, "boom"},
		// The server's end, at the same deadline, read before the client's
		// timer has fired.
		{"end of stream after the deadline, its timer not yet fired", lateContext{context.Background(), time.Now().Add(-time.Millisecond)}, io.EOF, codes.DeadlineExceeded, ""},
		{"end of stream with the deadline ahead", lateContext{context.Background(), time.Now().Add(time.Hour)}, io.EOF, codes.Unknown, "the stream ended without a message"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := recvError(tc.ctx, tc.err)
			if tc.code == codes.DeadlineExceeded {
				if status.Code(err) != codes.DeadlineExceeded {
					t.Fatalf("recvError = %v, want DeadlineExceeded", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("recvError = %v, want %q", err, tc.want)
			}
		})
	}
}
