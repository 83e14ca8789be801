// Package proto holds the protobuf contracts of Conduit and their generated Go:
//
//   - destination/v1: the Destination API the proxies stream endpoints and profiles from.
//   - identity/v1:    the Identity API the proxies obtain workload certificates from.
//   - plugin/v1:      the plugin protocol between the mesh and its extensions.
//
// It is its own Go module so that plugin-sdk (and a third party's plugin)
// can depend on the wire contracts without pulling in the mesh.
// Regenerate with `make proto`; `make verify` fails when generated code is stale.
package proto
