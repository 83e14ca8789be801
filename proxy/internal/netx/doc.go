// Package netx holds the connection plumbing shared by the inbound and
// outbound sides: peeking the first bytes for protocol detection, a listener
// fed with already-accepted connections (for net/http), bidirectional copies
// with byte accounting, tracking of open connections for a graceful drain, and
// SysConn, the TCP connection whose reads and writes are raw system calls.
package netx
