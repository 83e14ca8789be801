// Package destination is Conduit's service-discovery service: it watches
// Services, EndpointSlices, Pods, Nodes, ServiceProfiles (and SMI
// TrafficSplits when their CRD exists) through shared informers and streams,
// over the gRPC service conduit.destination.v1.Destination, the endpoints of
// an authority (Get) and its service profile (GetProfile) to the proxies.
//
// Every stream first receives a consistent snapshot, then deltas. The
// informer handlers only mark dependencies dirty; one worker recomputes the
// state of each watched target (a "topic") and wakes its subscribers through
// channels of capacity one, so a slow subscriber coalesces to the latest state
// and never blocks the others.
package destination
