// Command future is a test plugin that speaks only a future plugin protocol
// (go-plugin protocol version 99), to test version negotiation failures.
package main

import (
	"context"
	"errors"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

type p struct{ plugin.NetRPCUnsupportedPlugin }

func (p) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (p) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("unused")
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  plugin.HandshakeConfig{ProtocolVersion: 99, MagicCookieKey: sdk.MagicCookieKey, MagicCookieValue: sdk.MagicCookieValue},
		VersionedPlugins: map[int]plugin.PluginSet{99: {sdk.PluginName: p{}}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
