package pluginhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// hostPlugin is the host side of the go-plugin glue: it only dials.
type hostPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (hostPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("pluginhost: the host does not serve plugins")
}

func (hostPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return conn, nil
}

// Handshake is go-plugin's handshake for conduit.plugin.v1.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  sdk.ProtocolVersion,
		MagicCookieKey:   sdk.MagicCookieKey,
		MagicCookieValue: sdk.MagicCookieValue,
	}
}

// PluginSets are the protocol versions this host speaks.
func PluginSets() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{sdk.ProtocolVersion: {sdk.PluginName: hostPlugin{}}}
}

// LaunchOptions tune Launch.
type LaunchOptions struct {
	// Logger receives the plugin's logs under its name (default: discard).
	Logger *slog.Logger
	// HostVersion is reported to the plugin.
	HostVersion string
	// Stray receives what the plugin writes to its own stdout and stderr
	// outside of the protocol (default: discard).
	Stray io.Writer
	// StartTimeout bounds the start and handshake (default 10s).
	StartTimeout time.Duration
	// SHA256, if set (lower-case hex), is the digest the binary must have:
	// go-plugin's SecureConfig checks it right before running the binary,
	// and refuses to run one that differs.
	SHA256 string
	// Env, if not nil, is the plugin's whole environment (besides
	// go-plugin's own variables); nil passes the host's.
	Env []string
}

// Plugin is a running plugin subprocess. Close it when done.
type Plugin struct {
	*client.Client
	Info Info
	Path string
	gp   *plugin.Client
}

// Info is a plugin's description.
type Info = client.Info

// Launch starts the plugin binary at path, negotiates the protocol, and
// fetches its Info. The binary must be named mesh-<name> and report name.
func Launch(ctx context.Context, path string, opts LaunchOptions) (*Plugin, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Stray == nil {
		opts.Stray = io.Discard
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	base := filepath.Base(path)
	name := strings.TrimPrefix(base, BinaryPrefix)
	cmd := exec.Command(path)
	dieWithHost(cmd)
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  Handshake(),
		VersionedPlugins: PluginSets(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     opts.StartTimeout,
		Logger:           newHCLogger(opts.Logger, "pluginhost"),
		SyncStdout:       opts.Stray,
		SyncStderr:       opts.Stray,
	}
	if opts.Env != nil {
		cmd.Env = append([]string{}, opts.Env...)
		cfg.SkipHostEnv = true
	}
	if opts.SHA256 != "" {
		sum, err := hex.DecodeString(opts.SHA256)
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("pluginhost: %s: invalid SHA-256 %q", base, opts.SHA256)
		}
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	gp := plugin.NewClient(cfg)
	rpc, err := gp.Client()
	if err != nil {
		gp.Kill()
		return nil, launchError(path, err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		gp.Kill()
		return nil, fmt.Errorf("pluginhost: %s: %w", base, err)
	}
	conn, ok := raw.(*grpc.ClientConn)
	if !ok {
		gp.Kill()
		return nil, fmt.Errorf("pluginhost: %s: unexpected plugin client %T", base, raw)
	}
	p := &Plugin{Client: client.New(conn, opts.HostVersion), Path: path, gp: gp}
	ictx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	p.Info, err = p.Client.Info(ictx)
	if err != nil {
		gp.Kill()
		return nil, fmt.Errorf("pluginhost: %s: %w", base, err)
	}
	if strings.HasPrefix(base, BinaryPrefix) && p.Info.Name != name {
		gp.Kill()
		return nil, fmt.Errorf("pluginhost: %s reports the extension name %q, not %q: rename the binary %s%s", path, p.Info.Name, name, BinaryPrefix, p.Info.Name)
	}
	return p, nil
}

// launchError explains go-plugin's start errors.
func launchError(path string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "incompatible API version"):
		return fmt.Errorf("pluginhost: %s does not speak this mesh's plugin protocol %s (go-plugin protocol version %d): %w; "+
			"install a version of the plugin and of mesh built for the same protocol", path, sdk.APIVersion, sdk.ProtocolVersion, err)
	case strings.Contains(msg, "Incompatible core API version"), strings.Contains(msg, "incompatible core API version"):
		return fmt.Errorf("pluginhost: %s was built with an incompatible go-plugin: %w", path, err)
	case strings.Contains(msg, "checksums did not match"):
		return fmt.Errorf("pluginhost: %s is not the binary the allow-list names (its SHA-256 differs): refused to run it: %w", path, err)
	case strings.Contains(msg, "Unrecognized remote plugin message"), strings.Contains(msg, "plugin exited before we could connect"):
		return fmt.Errorf("pluginhost: %s is not a Conduit plugin (one built with the plugin SDK), or it failed to start: %w", path, err)
	}
	return fmt.Errorf("pluginhost: start %s: %w", path, err)
}

// Close stops the plugin subprocess.
func (p *Plugin) Close() { p.gp.Kill() }

// Exited tells whether the plugin subprocess has ended (e.g. crashed).
func (p *Plugin) Exited() bool { return p.gp.Exited() }

// newHCLogger returns an hclog logger (what go-plugin logs with) that
// forwards to l, keeping levels and naming the plugin in "plugin".
func newHCLogger(l *slog.Logger, name string) hclog.Logger {
	level := hclog.Error
	for _, lv := range []struct {
		s slog.Level
		h hclog.Level
	}{{slog.LevelDebug, hclog.Debug}, {slog.LevelInfo, hclog.Info}, {slog.LevelWarn, hclog.Warn}} {
		if l.Enabled(context.Background(), lv.s) {
			level = lv.h
			break
		}
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		JSONFormat: true,
		Output:     &slogWriter{l: l},
	})
}

// slogWriter re-emits hclog's JSON lines as slog records.
type slogWriter struct {
	mu  sync.Mutex
	l   *slog.Logger
	buf bytes.Buffer
}

func (w *slogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadBytes('\n')
		if err != nil {
			w.buf.Write(line) // incomplete line: keep it for later
			return len(p), nil
		}
		w.emit(bytes.TrimSpace(line))
	}
}

func (w *slogWriter) emit(line []byte) {
	if len(line) == 0 {
		return
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		w.l.Info(string(line))
		return
	}
	msg, _ := m["@message"].(string)
	lvl, _ := m["@level"].(string)
	module, _ := m["@module"].(string)
	delete(m, "@message")
	delete(m, "@level")
	delete(m, "@module")
	delete(m, "@timestamp")
	delete(m, "timestamp")
	attrs := make([]slog.Attr, 0, len(m)+1)
	if module != "" {
		// go-plugin names a plugin's records "<host>.<binary>"; keep the binary.
		if i := strings.LastIndexByte(module, '.'); i >= 0 {
			module = module[i+1:]
		}
		attrs = append(attrs, slog.String("plugin", module))
	}
	for k, v := range m {
		attrs = append(attrs, slog.Any(k, v))
	}
	level := slog.LevelInfo
	switch lvl {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	w.l.LogAttrs(context.Background(), level, msg, attrs...)
}
