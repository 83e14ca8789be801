package app_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// TestChunkExtensionWhitespace: a chunked response whose chunk-size lines
// have whitespace before their extensions ("5 ;x", which RFC 9112 allows
// and net/http refuses), from an application that is not Go's, reaches a
// Go client whole, through both proxies in every relay mode and from the
// server's proxy alone (an unmeshed client). The HTTP/1.1 fast path
// copied such lines as they came, and the client failed to read the body
// wherever a hop copied the response (HTTP/1.1 between the proxies, an
// unmeshed client). With the HTTP/1 fast path off, net/http's transport
// reads the response in the client's stead and refuses it, as a Go client
// does directly: the client must see that fail, not an empty body.
func TestChunkExtensionWhitespace(t *testing.T) {
	app := serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\t;y=1\r\n\r\n"); err != nil {
				return
			}
		}
	})
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			m := newMesh(t)
			client, server := m.twoProxies(t, app, mode.env)
			for _, to := range []struct{ name, addr string }{
				{"through both proxies", client.OutboundAddr().String()},
				{"from an unmeshed client", server.InboundAddr().String()},
			} {
				name := to.name
				var body []byte
				resp, err := h1Client(to.addr).Get("http://web/c")
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				refused := mode.env["CONDUIT_PROXY_HTTP1_FAST_PATH"] == "false"
				switch {
				case refused && err == nil && resp.StatusCode == http.StatusOK:
					t.Errorf("%s: the client read %q, want the response refused", name, body)
				case !refused && (err != nil || string(body) != "hello"):
					t.Errorf("%s: the client read %q, %v; want hello", name, body, err)
				}
			}
		})
	}
}
