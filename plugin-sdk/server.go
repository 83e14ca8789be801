package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"sync"

	pluginv1 "github.com/conduit-mesh/conduit/proto/plugin/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// capabilities lists what ext implements, in protocol order.
func capabilities(ext Extension) []pluginv1.Capability {
	var caps []pluginv1.Capability
	if _, ok := ext.(Commander); ok {
		caps = append(caps, pluginv1.Capability_CAPABILITY_COMMANDS)
	}
	if _, ok := ext.(Installer); ok {
		caps = append(caps, pluginv1.Capability_CAPABILITY_INSTALL)
	}
	if _, ok := ext.(Checker); ok {
		caps = append(caps, pluginv1.Capability_CAPABILITY_CHECKS)
	}
	if _, ok := ext.(InjectorHook); ok {
		caps = append(caps, pluginv1.Capability_CAPABILITY_INJECTOR_HOOK)
	}
	if _, ok := ext.(DestinationHook); ok {
		caps = append(caps, pluginv1.Capability_CAPABILITY_DESTINATION_HOOK)
	}
	return caps
}

// RegisterServices registers on s the conduit.plugin.v1 services of ext, for
// hosts and tests that serve an extension on their own gRPC server (Serve
// and ServeHooks do it for you).
func RegisterServices(s grpc.ServiceRegistrar, ext Extension) { register(s, ext) }

// register registers on s the services ext implements: Extension always, the
// others only for the capabilities ext has (a call to any other service gets
// codes.Unimplemented from gRPC).
func register(s grpc.ServiceRegistrar, ext Extension) {
	pluginv1.RegisterExtensionServer(s, &extensionServer{ext: ext})
	if c, ok := ext.(Commander); ok {
		pluginv1.RegisterCommanderServer(s, &commanderServer{c: c})
	}
	if i, ok := ext.(Installer); ok {
		pluginv1.RegisterInstallerServer(s, &installerServer{i: i})
	}
	if c, ok := ext.(Checker); ok {
		pluginv1.RegisterCheckerServer(s, &checkerServer{c: c})
	}
	if h, ok := ext.(InjectorHook); ok {
		pluginv1.RegisterInjectorHookServer(s, &injectorServer{h: h})
	}
	if h, ok := ext.(DestinationHook); ok {
		pluginv1.RegisterDestinationHookServer(s, &destinationServer{h: h})
	}
}

type extensionServer struct {
	pluginv1.UnimplementedExtensionServer
	ext Extension
}

func (s *extensionServer) Info(context.Context, *pluginv1.InfoRequest) (*pluginv1.InfoResponse, error) {
	info := s.ext.Info()
	resp := &pluginv1.InfoResponse{
		Name:         info.Name,
		Version:      info.Version,
		Description:  info.Description,
		ApiVersions:  []string{APIVersion},
		Capabilities: capabilities(s.ext),
		SdkVersion:   Version,
	}
	if c, ok := s.ext.(Commander); ok {
		for _, cmd := range c.Commands() {
			resp.Commands = append(resp.Commands, &pluginv1.CommandInfo{Name: cmd.Name, Short: cmd.Short})
		}
	}
	if c, ok := s.ext.(FlagChecker); ok {
		for _, f := range c.CheckFlags() {
			resp.CheckFlags = append(resp.CheckFlags, &pluginv1.CheckFlag{Name: f.Name, Usage: f.Usage})
		}
	}
	return resp, nil
}

func kubeFromProto(k *pluginv1.KubeFlags) KubeFlags {
	return KubeFlags{
		Kubeconfig:       k.GetKubeconfig(),
		Context:          k.GetContext(),
		Namespace:        k.GetNamespace(),
		ConduitNamespace: k.GetConduitNamespace(),
	}
}

type commanderServer struct {
	pluginv1.UnimplementedCommanderServer
	c Commander
}

// streamWriter sends everything written to it as stdout or stderr chunks.
type streamWriter struct {
	send   func(*pluginv1.RunResponse) error
	stderr bool
}

const maxChunk = 32 << 10

func (w *streamWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > maxChunk {
			chunk = chunk[:maxChunk]
		}
		b := append([]byte(nil), chunk...)
		msg := &pluginv1.RunResponse{Msg: &pluginv1.RunResponse_Stdout{Stdout: b}}
		if w.stderr {
			msg = &pluginv1.RunResponse{Msg: &pluginv1.RunResponse_Stderr{Stderr: b}}
		}
		if err := w.send(msg); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// lazyStdin asks the host for stdin on the first Read.
type lazyStdin struct {
	once sync.Once
	ask  func() error
	r    *io.PipeReader
	err  error
}

func (l *lazyStdin) Read(p []byte) (int, error) {
	l.once.Do(func() { l.err = l.ask() })
	if l.err != nil {
		return 0, l.err
	}
	return l.r.Read(p)
}

func (s *commanderServer) Run(stream pluginv1.Commander_RunServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "plugin-sdk: the first message of Run must be a RunStart")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()

	var mu sync.Mutex
	send := func(m *pluginv1.RunResponse) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(m)
	}
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					cancel()
				}
				pw.CloseWithError(io.ErrUnexpectedEOF)
				return
			}
			switch m.Msg.(type) {
			case *pluginv1.RunRequest_Stdin:
				if _, err := pw.Write(m.GetStdin()); err != nil {
					return
				}
			case *pluginv1.RunRequest_StdinEof:
				pw.Close()
			}
		}
	}()
	inv := &Invocation{
		Args: start.GetArgs(),
		Kube: kubeFromProto(start.GetKube()),
		Stdin: &lazyStdin{r: pr, ask: func() error {
			return send(&pluginv1.RunResponse{Msg: &pluginv1.RunResponse_StdinRequest{StdinRequest: &pluginv1.StdinRequest{}}})
		}},
		Stdout:           &streamWriter{send: send},
		Stderr:           &streamWriter{send: send, stderr: true},
		StdoutIsTerminal: start.GetStdoutIsTerminal(),
	}
	code := runCommand(ctx, s.c, inv)
	return send(&pluginv1.RunResponse{Msg: &pluginv1.RunResponse_Exit{Exit: &pluginv1.Exit{Code: int32(code)}}})
}

// runCommand runs c and turns its error (or panic) into an exit status.
func runCommand(ctx context.Context, c Commander, inv *Invocation) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(inv.Stderr, "Error: the extension panicked: %v\n%s", r, debug.Stack())
			code = 2
		}
	}()
	err := c.Run(ctx, inv)
	var ee *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	default:
		fmt.Fprintln(inv.Stderr, "Error:", err)
		return 1
	}
}

type installerServer struct {
	pluginv1.UnimplementedInstallerServer
	i Installer
}

func installReq(r *pluginv1.InstallRequest) (InstallRequest, error) {
	req := InstallRequest{Namespace: r.GetNamespace(), Kube: kubeFromProto(r.GetKube()), Values: map[string]any{}}
	if len(r.GetValuesJson()) > 0 {
		if err := json.Unmarshal(r.GetValuesJson(), &req.Values); err != nil {
			return req, status.Errorf(codes.InvalidArgument, "plugin-sdk: values are not a JSON object: %v", err)
		}
	}
	return req, nil
}

func (s *installerServer) Install(ctx context.Context, r *pluginv1.InstallRequest) (*pluginv1.ManifestResponse, error) {
	req, err := installReq(r)
	if err != nil {
		return nil, err
	}
	out, err := s.i.Install(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.ManifestResponse{Manifests: out}, nil
}

func (s *installerServer) Uninstall(ctx context.Context, r *pluginv1.InstallRequest) (*pluginv1.ManifestResponse, error) {
	req, err := installReq(r)
	if err != nil {
		return nil, err
	}
	out, err := s.i.Uninstall(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.ManifestResponse{Manifests: out}, nil
}

// toStatus keeps gRPC statuses and makes any other error Unknown with its text.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

type checkerServer struct {
	pluginv1.UnimplementedCheckerServer
	c Checker
}

// statusToProto converts a check status to its wire form.
func statusToProto(s CheckStatus) (pluginv1.CheckStatus, error) {
	switch s {
	case StatusOK:
		return pluginv1.CheckStatus_CHECK_STATUS_OK, nil
	case StatusWarn:
		return pluginv1.CheckStatus_CHECK_STATUS_WARN, nil
	case StatusFail:
		return pluginv1.CheckStatus_CHECK_STATUS_FAIL, nil
	case StatusSkipped:
		return pluginv1.CheckStatus_CHECK_STATUS_SKIPPED, nil
	}
	return 0, fmt.Errorf("plugin-sdk: check status %q is not one of %s, %s, %s, %s", s, StatusOK, StatusWarn, StatusFail, StatusSkipped)
}

// CategoriesToProto converts check categories to their wire form, rejecting
// unknown statuses and empty names.
func CategoriesToProto(cats []CheckCategory) ([]*pluginv1.CheckCategory, error) {
	out := make([]*pluginv1.CheckCategory, 0, len(cats))
	for _, c := range cats {
		if c.Name == "" {
			return nil, errors.New("plugin-sdk: a check category has no name")
		}
		pc := &pluginv1.CheckCategory{Name: c.Name}
		for _, r := range c.Checks {
			st, err := statusToProto(r.Status)
			if err != nil {
				return nil, fmt.Errorf("%w (category %q, check %q)", err, c.Name, r.Description)
			}
			if r.Description == "" {
				return nil, fmt.Errorf("plugin-sdk: a check of category %q has no description", c.Name)
			}
			pc.Checks = append(pc.Checks, &pluginv1.CheckResult{Description: r.Description, Status: st, Hint: r.Hint, Error: r.Error})
		}
		out = append(out, pc)
	}
	return out, nil
}

// CategoriesFromProto converts check categories from their wire form; an
// unspecified or unknown status becomes StatusFail.
func CategoriesFromProto(cats []*pluginv1.CheckCategory) []CheckCategory {
	out := make([]CheckCategory, 0, len(cats))
	for _, c := range cats {
		cc := CheckCategory{Name: c.GetName(), Checks: []CheckResult{}}
		for _, r := range c.GetChecks() {
			st := StatusFail
			switch r.GetStatus() {
			case pluginv1.CheckStatus_CHECK_STATUS_OK:
				st = StatusOK
			case pluginv1.CheckStatus_CHECK_STATUS_WARN:
				st = StatusWarn
			case pluginv1.CheckStatus_CHECK_STATUS_SKIPPED:
				st = StatusSkipped
			}
			cc.Checks = append(cc.Checks, CheckResult{Description: r.GetDescription(), Status: st, Error: r.GetError(), Hint: r.GetHint()})
		}
		out = append(out, cc)
	}
	return out
}

func (s *checkerServer) Check(ctx context.Context, r *pluginv1.CheckRequest) (*pluginv1.CheckResponse, error) {
	fc, _ := s.c.(FlagChecker)
	for name := range r.GetFlags() {
		if fc == nil || !slices.ContainsFunc(fc.CheckFlags(), func(f CheckFlag) bool { return f.Name == name }) {
			return nil, status.Errorf(codes.InvalidArgument, "plugin-sdk: check flag %q is not declared by the extension", name)
		}
	}
	var cats []CheckCategory
	var err error
	if fc != nil {
		cats, err = fc.CheckWithFlags(ctx, kubeFromProto(r.GetKube()), r.GetFlags())
	} else {
		cats, err = s.c.Check(ctx, kubeFromProto(r.GetKube()))
	}
	if err != nil {
		return nil, toStatus(err)
	}
	pc, err := CategoriesToProto(cats)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pluginv1.CheckResponse{Categories: pc}, nil
}

type injectorServer struct {
	pluginv1.UnimplementedInjectorHookServer
	h InjectorHook
}

func (s *injectorServer) PatchPod(ctx context.Context, r *pluginv1.PatchPodRequest) (*pluginv1.PatchPodResponse, error) {
	ops, err := s.h.PatchPod(ctx, &PodPatchRequest{
		Pod:                  r.GetPod(),
		Namespace:            r.GetNamespace(),
		NamespaceLabels:      r.GetNamespaceLabels(),
		NamespaceAnnotations: r.GetNamespaceAnnotations(),
		ProxyPath:            r.GetProxyPath(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if len(ops) == 0 {
		return &pluginv1.PatchPodResponse{}, nil
	}
	for _, op := range ops {
		switch op.Op {
		case "add", "remove", "replace", "test":
		default:
			return nil, status.Errorf(codes.Internal, "plugin-sdk: patch op %q on %q is not one of add, remove, replace, test", op.Op, op.Path)
		}
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "plugin-sdk: marshal patch: %v", err)
	}
	return &pluginv1.PatchPodResponse{JsonPatch: b}, nil
}

type destinationServer struct {
	pluginv1.UnimplementedDestinationHookServer
	h DestinationHook
}

func (s *destinationServer) AnnotateEndpoints(ctx context.Context, r *pluginv1.AnnotateEndpointsRequest) (*pluginv1.AnnotateEndpointsResponse, error) {
	eps := make([]Endpoint, 0, len(r.GetEndpoints()))
	for _, e := range r.GetEndpoints() {
		eps = append(eps, Endpoint{Address: e.GetAddress(), PodName: e.GetPodName(), PodNamespace: e.GetPodNamespace(), PodLabels: e.GetPodLabels()})
	}
	md, err := s.h.AnnotateEndpoints(ctx, r.GetAuthority(), eps)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pluginv1.AnnotateEndpointsResponse{Metadata: map[string]*pluginv1.EndpointMetadata{}}
	for addr, kv := range md {
		resp.Metadata[addr] = &pluginv1.EndpointMetadata{Entries: kv}
	}
	return resp, nil
}
