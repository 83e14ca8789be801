package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	pluginv1 "github.com/conduit-mesh/conduit/proto/plugin/v1"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// grpcPlugin is the go-plugin glue: the plugin side only serves.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	ext Extension
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	register(s, p.ext)
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("plugin-sdk: the SDK serves plugins; hosts use their own client")
}

// Serve runs ext as a Conduit plugin and returns when the host is done with
// it. Call it from main, and nothing else: the host talks to the plugin over
// its stdout, so write logs with Logger() (they reach the host's log under
// the plugin's name) and command output to the Invocation's writers.
//
// Run by hand rather than by `mesh`, the binary says how to use it and exits 1.
// An Info that does not validate is reported and exits 1.
func Serve(ext Extension) {
	if err := serve(ext); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func serve(ext Extension) error {
	info := ext.Info()
	if err := info.Validate(); err != nil {
		return err
	}
	if os.Getenv(MagicCookieKey) != MagicCookieValue {
		return fmt.Errorf("%s is the Conduit extension %q (version %s): run it through the mesh CLI as `mesh %s ...`, "+
			"with this binary in $MESH_PLUGINS_DIR, ~/.conduit/plugins or $PATH", filepath.Base(os.Args[0]), info.Name, info.Version, info.Name)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {PluginName: &grpcPlugin{ext: ext}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "plugin",
			Output:     os.Stderr,
			Level:      hclog.Warn,
			JSONFormat: true,
		}),
	})
	return nil
}

func handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// ServeHooks serves on addr (e.g. ":8089"), as plain gRPC until ctx ends,
// what the control plane needs to run ext's hooks: Info, and Distribution,
// which hands out this very executable. The injector and destination fetch
// it, check its SHA-256 against the cluster's allow-list (`mesh extensions
// allow <name>`), and run it as a go-plugin subprocess in their own pods:
// so the binary calling ServeHooks must call Serve(ext) when
// LaunchedAsPlugin(). Advertise addr with the conduit.dev/injector-hook and
// conduit.dev/destination-hook annotations on the extension's namespace (see
// docs/extensions.md).
func ServeHooks(ctx context.Context, addr string, ext Extension, opts ...grpc.ServerOption) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("plugin-sdk: listen on %s: %w", addr, err)
	}
	return ServeHooksListener(ctx, lis, ext, opts...)
}

// ServeHooksListener is ServeHooks on a listener the caller opened.
func ServeHooksListener(ctx context.Context, lis net.Listener, ext Extension, opts ...grpc.ServerOption) error {
	if err := ext.Info().Validate(); err != nil {
		lis.Close()
		return err
	}
	s := grpc.NewServer(opts...)
	pluginv1.RegisterExtensionServer(s, &extensionServer{ext: ext})
	pluginv1.RegisterDistributionServer(s, newDistributionServer())
	errCh := make(chan error, 1)
	go func() { errCh <- s.Serve(lis) }()
	select {
	case err := <-errCh:
		return fmt.Errorf("plugin-sdk: serve hooks: %w", err)
	case <-ctx.Done():
		s.GracefulStop()
		<-errCh
		return nil
	}
}

// Logger returns a logger for a plugin served with Serve. It writes to
// stderr in the JSON form the host parses, so that each record reaches the
// host's log at its level, under the plugin's name.
func Logger() *slog.Logger {
	return NewLogger(logOutput, slog.LevelDebug)
}

// logOutput is the process's stderr, which go-plugin forwards to the host's
// logger; it is captured before Serve redirects os.Stderr to the host's
// stray-output stream.
var logOutput io.Writer = os.Stderr

// NewLogger is Logger writing to w, dropping records below level.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.Attr{} // the host stamps the time
			case slog.MessageKey:
				a.Key = "@message"
			case slog.LevelKey:
				a.Key = "@level"
				if l, ok := a.Value.Any().(slog.Level); ok {
					a.Value = slog.StringValue(hclogLevel(l))
				}
			}
			return a
		},
	}))
}

func hclogLevel(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}
