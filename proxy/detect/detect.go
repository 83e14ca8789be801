package detect

import "bytes"

// Protocol is the result of detection.
type Protocol uint8

const (
	// NeedMore means the bytes seen so far are a prefix of a known protocol.
	NeedMore Protocol = iota
	// Opaque is anything not recognised.
	Opaque
	// HTTP1 is an HTTP/1.x request line.
	HTTP1
	// HTTP2 is the HTTP/2 client connection preface (prior knowledge, h2c).
	HTTP2
	// TLS is a TLS handshake record.
	TLS
)

func (p Protocol) String() string {
	switch p {
	case NeedMore:
		return "need-more"
	case HTTP1:
		return "http/1"
	case HTTP2:
		return "http/2"
	case TLS:
		return "tls"
	}
	return "opaque"
}

// H2Preface is the HTTP/2 client connection preface.
const H2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// MaxPeek is how many bytes detection may need at most.
const MaxPeek = 1024

var methods = [...]string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"}

// Detect classifies b. It returns NeedMore while b is a strict prefix of a
// recognisable start and more bytes could decide.
func Detect(b []byte) Protocol {
	if len(b) == 0 {
		return NeedMore
	}
	// TLS handshake record: type 22, version 3.x.
	if b[0] == 0x16 {
		if len(b) < 3 {
			return NeedMore
		}
		if b[1] == 3 && b[2] <= 4 {
			return TLS
		}
		return Opaque
	}
	if b[0] == 'P' && len(b) <= len(H2Preface) && string(b) == H2Preface[:len(b)] {
		if len(b) == len(H2Preface) {
			return HTTP2
		}
		return NeedMore
	}
	if len(b) >= len(H2Preface) && string(b[:len(H2Preface)]) == H2Preface {
		return HTTP2
	}
	return detectHTTP1(b)
}

// detectHTTP1 looks for "<METHOD> <target> HTTP/1.x\r\n" in the first line.
func detectHTTP1(b []byte) Protocol {
	matched := false
	for _, m := range methods {
		n := len(m)
		if len(b) <= n {
			if string(b) == (m + " ")[:len(b)] {
				return NeedMore
			}
			continue
		}
		if string(b[:n]) == m && b[n] == ' ' {
			matched = true
			b = b[n+1:]
			break
		}
	}
	if !matched {
		return Opaque
	}
	eol := bytes.IndexByte(b, '\n')
	line := b
	if eol >= 0 {
		line = b[:eol]
	} else if len(b) > MaxPeek {
		return Opaque
	}
	sp := bytes.LastIndexByte(line, ' ')
	if sp < 0 {
		if eol >= 0 {
			return Opaque
		}
		return NeedMore
	}
	ver := line[sp+1:]
	if len(ver) > 0 && ver[len(ver)-1] == '\r' {
		ver = ver[:len(ver)-1]
	}
	const v = "HTTP/1."
	if eol < 0 {
		// The version may still be incomplete.
		if len(ver) < len(v)+1 {
			if string(ver) == v[:min(len(ver), len(v))] {
				return NeedMore
			}
			// Could be part of the target: keep reading.
			return NeedMore
		}
	}
	if len(ver) == len(v)+1 && string(ver[:len(v)]) == v && (ver[len(v)] == '0' || ver[len(v)] == '1') {
		return HTTP1
	}
	if eol < 0 {
		return NeedMore
	}
	return Opaque
}
