// Package inbound serves the proxy's inbound listener: it terminates mTLS
// for connections addressed to this workload's identity, detects HTTP/1 and
// HTTP/2, sets conduit-client-id to the authenticated peer (stripping any
// client-supplied value) and forwards to the application on
// 127.0.0.1:<original port> (or [::1]:<original port> when 127.0.0.1 refuses
// and the proxy serves IPv6); everything else is passed through as opaque TCP.
package inbound
