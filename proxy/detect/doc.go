// Package detect classifies the first bytes of a connection: an HTTP/2
// prior-knowledge preface, an HTTP/1.x request line, a TLS ClientHello (whose
// SNI and ALPN it parses) or anything else (opaque TCP). Every function is
// allocation-free and safe on arbitrary input.
package detect
