package netx

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"time"
)

// NewReverseProxy returns the httputil.ReverseProxy of a proxy's general
// (net/http) path, sending requests with rt and answering its failures
// with onError:
//   - transparent: ReverseProxy's X-Forwarded-* handling is undone;
//   - a fixed-length response is written at once (DATA with END_STREAM in
//     one frame on HTTP/2), a streaming one (gRPC, unknown length) flushed
//     after every write (FlushInterval 0), and a head whose body is late
//     goes at once (HeadFirst, which Relay's requests need);
//   - copy buffers come from BufferPool, and ReverseProxy's own messages
//     are logged at debug level on log.
func NewReverseProxy(rt http.RoundTripper, onError func(http.ResponseWriter, *http.Request, error), log *slog.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        keepForwarded,
		Transport:      rt,
		FlushInterval:  0,
		ModifyResponse: HeadFirst,
		BufferPool:     BufferPool{},
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ErrorHandler:   onError,
	}
}

// keepForwarded is the Rewrite of NewReverseProxy: the request keeps the
// X-Forwarded-* and Forwarded fields it came with, and gets none. Its
// trailer is the incoming request's own map, which the server fills when
// the body ends: ReverseProxy's copy holds the announced names only, and
// the transport would send no value.
func keepForwarded(pr *httputil.ProxyRequest) {
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
		if v, ok := pr.In.Header[h]; ok {
			pr.Out.Header[h] = v
		}
	}
	if pr.In.Trailer != nil {
		pr.Out.Trailer = pr.In.Trailer
	}
}

// NoDefaultUserAgent keeps net/http's transports from sending a
// User-Agent of their own (Go-http-client/1.1 or /2.0) for a request
// that has none: an empty value is their "send none", as ReverseProxy
// sets it. The proxies' own clients (h1.Pool, h2.Client) send no empty
// User-Agent either.
func NoDefaultUserAgent(r *http.Request) {
	if _, ok := r.Header["User-Agent"]; !ok {
		if r.Header == nil {
			r.Header = http.Header{}
		}
		r.Header["User-Agent"] = []string{""}
	}
}

// NewServer returns the net/http server of a proxy's general path: h
// serves the protocols given; a connection is closed when a request head
// takes over 30 s or it idles for 10 minutes between requests (longer than
// the usual clients' pools keep a connection, so that a client does not
// send a request on a connection the proxy is closing); connContext puts
// what the proxy knows of a connection in its requests' context; the
// server's own messages are logged at debug level on log.
func NewServer(h http.Handler, protos *http.Protocols, connContext func(context.Context, net.Conn) context.Context, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		Protocols:         protos,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       10 * time.Minute,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
