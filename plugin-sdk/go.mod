module github.com/conduit-mesh/conduit/plugin-sdk

go 1.25.0

require github.com/conduit-mesh/conduit/proto v0.0.0

replace github.com/conduit-mesh/conduit/proto => ../proto
