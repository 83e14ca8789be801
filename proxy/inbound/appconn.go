package inbound

import (
	"net"
	"sync/atomic"

	"github.com/conduit-mesh/conduit/proxy/metrics"
)

// appKey is the series of the proxy's connections to the application
// (opaque ones included): direction="inbound", peer="dst".
var appKey = metrics.TCPKey{Direction: "inbound", Peer: "dst"}

// appConn is a connection to the application on an HTTP path (a pooled
// HTTP/1.1 connection, an h2c connection, or one of net/http's transports):
// it counts its bytes and, once closed, its end, classified by the first
// error its reads and writes returned. It is made once per connection; a
// request through it adds two atomic additions per read or write and
// allocates nothing.
type appConn struct {
	net.Conn
	stats  metrics.TCP
	class  atomic.Uint32 // metrics.CloseClass of the first failure
	closed atomic.Bool
}

func newAppConn(c net.Conn, reg *metrics.Registry) *appConn {
	return &appConn{Conn: c, stats: reg.Open(appKey)}
}

func (c *appConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.stats.Read(n)
	if err != nil {
		c.note(err)
	}
	return n, err
}

func (c *appConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.stats.Write(n)
	if err != nil {
		c.note(err)
	}
	return n, err
}

// note keeps the class of the first error that is a failure.
func (c *appConn) note(err error) {
	if cl := metrics.Classify(err); cl != metrics.Success {
		c.class.CompareAndSwap(uint32(metrics.Success), uint32(cl))
	}
}

// Close closes the connection and, once, its stats.
func (c *appConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.stats.CloseAs(metrics.CloseClass(c.class.Load()))
	}
	return c.Conn.Close()
}

// CloseWrite half-closes the connection when it can (a protocol switch's
// copy, say).
func (c *appConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// NetConn returns the wrapped connection.
func (c *appConn) NetConn() net.Conn { return c.Conn }
