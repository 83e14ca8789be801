package h2

import (
	"bytes"
	"net"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// bufConn is a net.Conn that keeps what is written.
type bufConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *bufConn) Write(p []byte) (int, error) { return c.out.Write(p) }

// TestHeadersSensitive: credentials go out as never-indexed literals, every
// time; other fields are indexed and repeat as one byte.
func TestHeadersSensitive(t *testing.T) {
	nc := &bufConn{}
	var c conn
	c.init(nc, bytes.NewReader(nil))
	for i := range 2 {
		c.lock()
		err := c.writeHeaders(uint32(2*i+1), true, func(enc func(string, string)) {
			enc("authorization", "Bearer secret-token")
			enc("cookie", "session=secret")
			enc("user-agent", "a-client/1.2.3")
		})
		c.unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	fr := http2.NewFramer(nil, bytes.NewReader(nc.out.Bytes()))
	dec := hpack.NewDecoder(4096, nil)
	for i := range 2 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		block := f.(*http2.HeadersFrame).HeaderBlockFragment()
		fields, err := dec.DecodeFull(block)
		if err != nil {
			t.Fatal(err)
		}
		for _, hf := range fields {
			if want := hf.Name != "user-agent"; hf.Sensitive != want {
				t.Errorf("block %d: %s sensitive %v, want %v", i, hf.Name, hf.Sensitive, want)
			}
		}
	}
}
