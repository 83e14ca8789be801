package h1

import (
	"bufio"
	"net"
	"strings"
	"testing"
)

// rawEcho is an upstream that answers every request on a connection with a
// fixed response, parsing with this package so that the benchmark counts
// the fast path's allocations and little else.
func rawEcho(b *testing.B, resp string) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				var h Head
				for {
					if err := h.ReadRequest(br); err != nil {
						return
					}
					if _, err := br.Discard(int(max(h.ContentLength, 0))); err != nil {
						return
					}
					bw.WriteString(resp)
					if bw.Flush() != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// BenchmarkServerExchange forwards sequential 1 KiB POSTs with 1 KiB
// answers on one client connection: the per-request cost of the fast path.
func BenchmarkServerExchange(b *testing.B) {
	body := strings.Repeat("x", 1024)
	up := rawEcho(b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n"+body)
	rt := &benchRouter{pool: poolTo(up)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var srv Server
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		srv.ServeConn(c, rt, func(c net.Conn) { c.Close() })
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("POST /echo HTTP/1.1\r\nHost: web.ns.svc.cluster.local\r\nUser-Agent: bench\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n" + body)
	br := bufio.NewReader(c)
	var resp Head
	b.SetBytes(2048)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := resp.ReadResponse(br); err != nil {
			b.Fatal(err)
		}
		if resp.Status != 200 {
			b.Fatalf("status %d", resp.Status)
		}
		if _, err := br.Discard(int(resp.ContentLength)); err != nil {
			b.Fatal(err)
		}
	}
}

type benchRouter struct{ pool *Pool }

func (r *benchRouter) Route(h *Head) (Call, bool) {
	h.Add("Conduit-Client-Id", "client.ns.serviceaccount.identity.conduit.cluster.local")
	return Call{Pool: r.pool}, true
}
