# The plugin SDK (own module, plugin-sdk/) and its example extension mesh-hello,
# whose binary is also the image of its in-cluster hook server
# (`mesh-hello serve-hooks`). `make build` puts bin/mesh-hello next to bin/mesh:
#   MESH_PLUGINS_DIR=$PWD/bin bin/mesh hello greet
BINARIES += mesh-hello=./plugin-sdk/examples/hello

.PHONY: plugin-sdk-test
plugin-sdk-test: ## Unit tests of the plugin SDK, its example, pluginhost and the CLI's plugin commands.
	cd plugin-sdk && go test -race -count=1 ./...
	go test -race -count=1 ./pkg/pluginhost/...
	go test -race -count=1 -run 'TestPlugins|TestExtractKubeFlags' ./cli/cmd/
