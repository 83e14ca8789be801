package detect

import (
	"bytes"
	"testing"

	"github.com/conduit-mesh/conduit/proxy/internal/tlstest"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		in   string
		want Protocol
	}{
		{"", NeedMore},
		{"G", NeedMore},
		{"GET", NeedMore},
		{"GET ", NeedMore},
		{"GET / HTTP/1.1\r\n", HTTP1},
		{"GET / HTTP/1.0\r\nHost: x\r\n\r\n", HTTP1},
		{"POST /a/b?c=d HTTP/1.1\r\n", HTTP1},
		{"GET / HTTP/1.", NeedMore},
		{"GET / HTTP/2.0\r\n", Opaque},
		{"GET /\r\n", Opaque},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP2},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", HTTP2},
		{"PRI * HTTP/2", NeedMore},
		{"PRX", Opaque},
		{"\x16\x03\x01\x00\x10", TLS},
		{"\x16\x03", NeedMore},
		{"\x16\x07\x01", Opaque},
		{"SSH-2.0-OpenSSH\r\n", Opaque},
		{"\x00\x00\x00\x01", Opaque},
		{"get / HTTP/1.1\r\n", Opaque},
		{"GETX / HTTP/1.1\r\n", Opaque},
	}
	for _, tt := range tests {
		if got := Detect([]byte(tt.in)); got != tt.want {
			t.Errorf("Detect(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseClientHello(t *testing.T) {
	hello := tlstest.ClientHello(t, "web.ns.serviceaccount.identity.conduit.cluster.local", []string{"h2", "conduit.opaque"})
	if Detect(hello) != TLS {
		t.Fatalf("Detect(ClientHello) = %v", Detect(hello))
	}
	h, ok, _ := ParseClientHello(hello)
	if !ok {
		t.Fatal("ParseClientHello failed on a real ClientHello")
	}
	if string(h.SNI) != "web.ns.serviceaccount.identity.conduit.cluster.local" {
		t.Errorf("SNI %q", h.SNI)
	}
	if !h.HasALPN("h2") || !h.HasALPN("conduit.opaque") || h.HasALPN("http/1.1") {
		t.Errorf("ALPN %q", h.ALPN)
	}
	// A truncated record asks for the rest.
	_, ok, need := ParseClientHello(hello[:20])
	if ok || need != len(hello) {
		t.Errorf("truncated: ok=%v need=%d, want need=%d", ok, need, len(hello))
	}
	// Garbage is rejected.
	bad := append([]byte(nil), hello...)
	bad[5] = 2 // ServerHello type
	if _, ok, need := ParseClientHello(bad); ok || need != 0 {
		t.Errorf("ServerHello accepted: ok=%v need=%d", ok, need)
	}
	noSNI := tlstest.ClientHello(t, "", nil)
	if h, ok, _ := ParseClientHello(noSNI); !ok || len(h.SNI) != 0 {
		t.Errorf("no SNI: ok=%v sni=%q", ok, h.SNI)
	}
}

func FuzzDetect(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", H2Preface, "\x16\x03\x01\x00\x05hello", "PRI", "POST "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := Detect(b)
		if p == HTTP2 && !bytes.HasPrefix(b, []byte(H2Preface)) {
			t.Fatalf("HTTP2 without preface: %q", b)
		}
		if p == TLS && b[0] != 0x16 {
			t.Fatalf("TLS without handshake type: %q", b)
		}
		// Detection is monotonic: once decided, more bytes do not change it (for HTTP2 and TLS).
		if p == HTTP2 || p == TLS {
			if q := Detect(append(append([]byte(nil), b...), 'x')); q != p {
				t.Fatalf("Detect changed from %v to %v with one more byte", p, q)
			}
		}
	})
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(tlstest.ClientHello(f, "a.b", []string{"h2"}))
	f.Add([]byte("\x16\x03\x01\x00\x04\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok, need := ParseClientHello(b)
		if ok && need != 0 {
			t.Fatalf("ok with need=%d", need)
		}
		if len(h.SNI) > len(b) || len(h.ALPN) > len(b) {
			t.Fatal("slices longer than input")
		}
		h.HasALPN("h2")
	})
}

func BenchmarkDetectHTTP1(b *testing.B) {
	in := []byte("POST /api/v1/items?x=1 HTTP/1.1\r\nHost: web\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if Detect(in) != HTTP1 {
			b.Fatal("not http1")
		}
	}
}

func BenchmarkDetectH2(b *testing.B) {
	in := []byte(H2Preface + "\x00\x00\x00")
	b.ReportAllocs()
	for b.Loop() {
		if Detect(in) != HTTP2 {
			b.Fatal("not h2")
		}
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	in := tlstest.ClientHello(b, "web.ns.serviceaccount.identity.conduit.cluster.local", []string{"h2"})
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := ParseClientHello(in); !ok {
			b.Fatal("parse")
		}
	}
}
