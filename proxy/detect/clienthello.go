package detect

// ClientHello holds what the proxy needs from a TLS ClientHello. The slices
// point into the parsed buffer.
type ClientHello struct {
	SNI []byte
	// ALPN is the raw ALPN extension protocol list (length-prefixed names).
	ALPN []byte
}

// HasALPN reports whether proto is one of the offered ALPN protocols.
func (h *ClientHello) HasALPN(proto string) bool {
	b := h.ALPN
	for len(b) > 0 {
		n := int(b[0])
		if 1+n > len(b) {
			return false
		}
		if string(b[1:1+n]) == proto {
			return true
		}
		b = b[1+n:]
	}
	return false
}

// ParseClientHello parses a TLS record holding a ClientHello. ok is false
// when b is not a complete, well-formed ClientHello; need is true when b is a
// valid prefix and more bytes (up to the returned total record length) are needed.
func ParseClientHello(b []byte) (h ClientHello, ok bool, need int) {
	if len(b) < 5 {
		return h, false, 5
	}
	if b[0] != 0x16 || b[1] != 3 {
		return h, false, 0
	}
	recLen := int(b[3])<<8 | int(b[4])
	if len(b) < 5+recLen {
		return h, false, 5 + recLen
	}
	p := b[5 : 5+recLen]
	// Handshake header: type 1 (ClientHello), 3-byte length.
	if len(p) < 4 || p[0] != 1 {
		return h, false, 0
	}
	hsLen := int(p[1])<<16 | int(p[2])<<8 | int(p[3])
	p = p[4:]
	if hsLen > len(p) {
		// A ClientHello split over several records: not supported, treat as opaque.
		return h, false, 0
	}
	p = p[:hsLen]
	// version(2) random(32)
	if len(p) < 34 {
		return h, false, 0
	}
	p = p[34:]
	var v []byte
	var good bool
	if v, p, good = vec8(p); !good || len(v) > 32 { // session id
		return h, false, 0
	}
	if _, p, good = vec16(p); !good { // cipher suites
		return h, false, 0
	}
	if _, p, good = vec8(p); !good { // compression methods
		return h, false, 0
	}
	if len(p) == 0 {
		return h, true, 0 // no extensions
	}
	exts, rest, good := vec16(p)
	if !good || len(rest) != 0 {
		return h, false, 0
	}
	for len(exts) > 0 {
		if len(exts) < 4 {
			return h, false, 0
		}
		typ := int(exts[0])<<8 | int(exts[1])
		var body []byte
		if body, exts, good = vec16(exts[2:]); !good {
			return h, false, 0
		}
		switch typ {
		case 0: // server_name
			list, _, good := vec16(body)
			if !good {
				return h, false, 0
			}
			for len(list) >= 3 {
				nameType := list[0]
				var name []byte
				if name, list, good = vec16(list[1:]); !good {
					return h, false, 0
				}
				if nameType == 0 {
					h.SNI = name
				}
			}
		case 16: // application_layer_protocol_negotiation
			list, _, good := vec16(body)
			if !good {
				return h, false, 0
			}
			h.ALPN = list
		}
	}
	return h, true, 0
}

func vec8(b []byte) (v, rest []byte, ok bool) {
	if len(b) < 1 || 1+int(b[0]) > len(b) {
		return nil, nil, false
	}
	n := int(b[0])
	return b[1 : 1+n], b[1+n:], true
}

func vec16(b []byte) (v, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(b[0])<<8 | int(b[1])
	if 2+n > len(b) {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}
