package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	pluginv1 "github.com/conduit-mesh/conduit/proto/plugin/v1"
	"google.golang.org/grpc"
)

// Capability names, as `mesh extensions list` prints them.
type Capability string

// The capabilities of conduit.plugin.v1.
const (
	Commands        Capability = "commands"
	Install         Capability = "install"
	Checks          Capability = "checks"
	InjectorHook    Capability = "injector-hook"
	DestinationHook Capability = "destination-hook"
)

var capNames = map[pluginv1.Capability]Capability{
	pluginv1.Capability_CAPABILITY_COMMANDS:         Commands,
	pluginv1.Capability_CAPABILITY_INSTALL:          Install,
	pluginv1.Capability_CAPABILITY_CHECKS:           Checks,
	pluginv1.Capability_CAPABILITY_INJECTOR_HOOK:    InjectorHook,
	pluginv1.Capability_CAPABILITY_DESTINATION_HOOK: DestinationHook,
}

// ErrNotSupported is wrapped by the error of a call to a capability the
// extension does not declare.
var ErrNotSupported = errors.New("capability not provided by the extension")

// Info is an extension's description, as it reports it.
type Info struct {
	Name         string        `json:"name"`
	Version      string        `json:"version"`
	Description  string        `json:"description,omitempty"`
	APIVersions  []string      `json:"apiVersions"`
	Capabilities []Capability  `json:"capabilities"`
	Commands     []sdk.Command `json:"commands,omitempty"`
	SDKVersion   string        `json:"sdkVersion,omitempty"`
	// CheckFlags are the flags of `mesh <name> check` besides the host's.
	CheckFlags []sdk.CheckFlag `json:"checkFlags,omitempty"`
}

// Has tells whether the extension declares c.
func (i Info) Has(c Capability) bool { return slices.Contains(i.Capabilities, c) }

// Client calls one extension. It is safe for concurrent use.
type Client struct {
	conn        grpc.ClientConnInterface
	hostVersion string

	mu   sync.Mutex
	info *Info
}

// New returns a client of the extension served on conn. hostVersion is
// reported to the extension in Info requests.
func New(conn grpc.ClientConnInterface, hostVersion string) *Client {
	return &Client{conn: conn, hostVersion: hostVersion}
}

// Info returns the extension's description (fetched once, then cached). It
// fails if the extension does not speak sdk.APIVersion.
func (c *Client) Info(ctx context.Context) (Info, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.info != nil {
		return *c.info, nil
	}
	resp, err := pluginv1.NewExtensionClient(c.conn).Info(ctx, &pluginv1.InfoRequest{HostVersion: c.hostVersion})
	if err != nil {
		return Info{}, fmt.Errorf("plugin: info: %w", err)
	}
	info := Info{
		Name:        resp.GetName(),
		Version:     resp.GetVersion(),
		Description: resp.GetDescription(),
		APIVersions: resp.GetApiVersions(),
		SDKVersion:  resp.GetSdkVersion(),
	}
	for _, pc := range resp.GetCapabilities() {
		if name, ok := capNames[pc]; ok {
			info.Capabilities = append(info.Capabilities, name)
		}
	}
	for _, cmd := range resp.GetCommands() {
		info.Commands = append(info.Commands, sdk.Command{Name: cmd.GetName(), Short: cmd.GetShort()})
	}
	for _, f := range resp.GetCheckFlags() {
		info.CheckFlags = append(info.CheckFlags, sdk.CheckFlag{Name: f.GetName(), Usage: f.GetUsage()})
	}
	if !slices.Contains(info.APIVersions, sdk.APIVersion) {
		return Info{}, fmt.Errorf("plugin: extension %q (version %s) speaks %s, not %s: install a version of the extension built for this mesh",
			info.Name, info.Version, strings.Join(info.APIVersions, ", "), sdk.APIVersion)
	}
	c.info = &info
	return info, nil
}

// need returns an error unless the extension declares capability cap.
func (c *Client) need(ctx context.Context, cap Capability) error {
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	if info.Has(cap) {
		return nil
	}
	provided := "none"
	if len(info.Capabilities) > 0 {
		names := make([]string, len(info.Capabilities))
		for i, c := range info.Capabilities {
			names[i] = string(c)
		}
		provided = strings.Join(names, ", ")
	}
	return fmt.Errorf("plugin: extension %q (version %s) does not provide %s (it provides: %s): %w", info.Name, info.Version, cap, provided, ErrNotSupported)
}

func kubeToProto(k sdk.KubeFlags) *pluginv1.KubeFlags {
	return &pluginv1.KubeFlags{Kubeconfig: k.Kubeconfig, Context: k.Context, Namespace: k.Namespace, ConduitNamespace: k.ConduitNamespace}
}

// Stdio are the streams of a command run.
type Stdio struct {
	// In is read only if the command asks for its stdin; nil is an empty stdin.
	In       io.Reader
	Out, Err io.Writer
	// OutIsTerminal is passed to the command.
	OutIsTerminal bool
}

// Run runs the extension's command with args and returns its exit status.
// The error is non-nil when the command could not run or did not finish
// (the plugin crashed, or ctx ended); its exit status is then meaningless.
// A goroutine blocked reading stdio.In is left behind when the command ends.
func (c *Client) Run(ctx context.Context, args []string, kube sdk.KubeFlags, stdio Stdio) (int, error) {
	if err := c.need(ctx, Commands); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pluginv1.NewCommanderClient(c.conn).Run(ctx)
	if err != nil {
		return 0, fmt.Errorf("plugin: run: %w", err)
	}
	if err := stream.Send(&pluginv1.RunRequest{Msg: &pluginv1.RunRequest_Start{Start: &pluginv1.RunStart{
		Args: args, Kube: kubeToProto(kube), StdoutIsTerminal: stdio.OutIsTerminal,
	}}}); err != nil {
		return 0, fmt.Errorf("plugin: run: send start: %w", err)
	}
	out, errw := stdio.Out, stdio.Err
	if out == nil {
		out = io.Discard
	}
	if errw == nil {
		errw = io.Discard
	}
	stdinStarted := false
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return 0, fmt.Errorf("plugin: run: %w", ctx.Err())
			}
			return 0, fmt.Errorf("plugin: run: the extension ended without an exit status: %w", err)
		}
		switch msg := m.Msg.(type) {
		case *pluginv1.RunResponse_Stdout:
			if _, err := out.Write(msg.Stdout); err != nil {
				return 0, fmt.Errorf("plugin: run: write stdout: %w", err)
			}
		case *pluginv1.RunResponse_Stderr:
			if _, err := errw.Write(msg.Stderr); err != nil {
				return 0, fmt.Errorf("plugin: run: write stderr: %w", err)
			}
		case *pluginv1.RunResponse_StdinRequest:
			if !stdinStarted {
				stdinStarted = true
				go forwardStdin(stream, stdio.In)
			}
		case *pluginv1.RunResponse_Exit:
			return int(msg.Exit.GetCode()), nil
		}
	}
}

func forwardStdin(stream pluginv1.Commander_RunClient, in io.Reader) {
	if in != nil {
		buf := make([]byte, 32<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if serr := stream.Send(&pluginv1.RunRequest{Msg: &pluginv1.RunRequest_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}); serr != nil {
					return
				}
			}
			if err != nil {
				break
			}
		}
	}
	_ = stream.Send(&pluginv1.RunRequest{Msg: &pluginv1.RunRequest_StdinEof{StdinEof: &pluginv1.StdinEOF{}}})
}

func installReq(req sdk.InstallRequest) (*pluginv1.InstallRequest, error) {
	r := &pluginv1.InstallRequest{Namespace: req.Namespace, Kube: kubeToProto(req.Kube)}
	if len(req.Values) > 0 {
		b, err := json.Marshal(req.Values)
		if err != nil {
			return nil, fmt.Errorf("plugin: install: values: %w", err)
		}
		r.ValuesJson = b
	}
	return r, nil
}

// Install returns the extension's manifests.
func (c *Client) Install(ctx context.Context, req sdk.InstallRequest) ([]byte, error) {
	if err := c.need(ctx, Install); err != nil {
		return nil, err
	}
	r, err := installReq(req)
	if err != nil {
		return nil, err
	}
	resp, err := pluginv1.NewInstallerClient(c.conn).Install(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("plugin: install: %w", err)
	}
	return resp.GetManifests(), nil
}

// Uninstall returns the manifests to delete to remove the extension.
func (c *Client) Uninstall(ctx context.Context, req sdk.InstallRequest) ([]byte, error) {
	if err := c.need(ctx, Install); err != nil {
		return nil, err
	}
	r, err := installReq(req)
	if err != nil {
		return nil, err
	}
	resp, err := pluginv1.NewInstallerClient(c.conn).Uninstall(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("plugin: uninstall: %w", err)
	}
	return resp.GetManifests(), nil
}

// Check runs the extension's checks, with no check flags set.
func (c *Client) Check(ctx context.Context, kube sdk.KubeFlags) ([]sdk.CheckCategory, error) {
	return c.CheckWithFlags(ctx, kube, nil)
}

// CheckWithFlags runs the extension's checks with the values of the check
// flags it declares (Info.CheckFlags) that the user set, by name. An
// extension refuses a flag it does not declare.
func (c *Client) CheckWithFlags(ctx context.Context, kube sdk.KubeFlags, flags map[string]string) ([]sdk.CheckCategory, error) {
	if err := c.need(ctx, Checks); err != nil {
		return nil, err
	}
	resp, err := pluginv1.NewCheckerClient(c.conn).Check(ctx, &pluginv1.CheckRequest{Kube: kubeToProto(kube), Flags: flags})
	if err != nil {
		return nil, fmt.Errorf("plugin: check: %w", err)
	}
	return sdk.CategoriesFromProto(resp.GetCategories()), nil
}

// PatchPod returns the extension's RFC 6902 JSON patch for the pod (nil for
// none). The patch is checked to be a JSON array of operations.
func (c *Client) PatchPod(ctx context.Context, req *sdk.PodPatchRequest) ([]byte, error) {
	if err := c.need(ctx, InjectorHook); err != nil {
		return nil, err
	}
	resp, err := pluginv1.NewInjectorHookClient(c.conn).PatchPod(ctx, &pluginv1.PatchPodRequest{
		Pod: req.Pod, Namespace: req.Namespace, NamespaceLabels: req.NamespaceLabels, NamespaceAnnotations: req.NamespaceAnnotations, ProxyPath: req.ProxyPath,
	})
	if err != nil {
		return nil, fmt.Errorf("plugin: patch pod: %w", err)
	}
	patch := resp.GetJsonPatch()
	if len(patch) == 0 {
		return nil, nil
	}
	var ops []struct {
		Op   string `json:"op"`
		Path string `json:"path"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		return nil, fmt.Errorf("plugin: patch pod: the extension's patch is not a JSON array of operations: %w", err)
	}
	for _, op := range ops {
		if op.Op == "" || !strings.HasPrefix(op.Path, "/") {
			return nil, fmt.Errorf("plugin: patch pod: invalid operation %q on path %q", op.Op, op.Path)
		}
	}
	return patch, nil
}

// AnnotateEndpoints returns extra metadata per endpoint address.
func (c *Client) AnnotateEndpoints(ctx context.Context, authority string, eps []sdk.Endpoint) (map[string]map[string]string, error) {
	if err := c.need(ctx, DestinationHook); err != nil {
		return nil, err
	}
	req := &pluginv1.AnnotateEndpointsRequest{Authority: authority}
	for _, e := range eps {
		req.Endpoints = append(req.Endpoints, &pluginv1.Endpoint{Address: e.Address, PodName: e.PodName, PodNamespace: e.PodNamespace, PodLabels: e.PodLabels})
	}
	resp, err := pluginv1.NewDestinationHookClient(c.conn).AnnotateEndpoints(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("plugin: annotate endpoints: %w", err)
	}
	out := make(map[string]map[string]string, len(resp.GetMetadata()))
	for addr, md := range resp.GetMetadata() {
		out[addr] = md.GetEntries()
	}
	return out, nil
}
