package app_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seenRequest is what an application sees of a request.
type seenRequest struct {
	Method, URI, Host, Proto string
	Header                   http.Header
	ContentLength            int64
	TransferEncoding         []string
	Body                     string
	Trailer                  http.Header
}

// echoSeen answers every request with its seenRequest as JSON.
var echoSeen = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	_ = json.NewEncoder(w).Encode(seenRequest{Method: r.Method, URI: r.RequestURI, Host: r.Host, Proto: r.Proto,
		Header: r.Header, ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding, Body: string(body), Trailer: r.Trailer})
})

// TestRequestAsDirect: an application sees a request through both proxies
// as it sees it from the same client directly, but for the
// conduit-client-id the server's proxy adds: method, target, Host,
// protocol, header fields (repeated, empty, X-Forwarded-*), framing and
// body, in every relay mode, for HTTP/1.1 and h2c clients.
func TestRequestAsDirect(t *testing.T) {
	direct := startHandler(t, echoSeen)
	eachRelay(t, echoSeen, func(t *testing.T, _ relayMode, c relayClient, path string) {
		dc := directClient(c, direct)
		for _, tc := range []struct {
			name   string
			method string
			body   string
			length bool
		}{
			{"GET", http.MethodGet, "", false},
			{"POST with a length", http.MethodPost, strings.Repeat("b", 3000), true},
			{"POST streamed", http.MethodPost, strings.Repeat("s", 3000), false},
		} {
			do := func(hc *http.Client) seenRequest {
				t.Helper()
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
					if !tc.length {
						body = io.MultiReader(body) // no length known
					}
				}
				req, _ := http.NewRequest(tc.method, "http://web"+path+"/a%2Fb;m=1/%7Eu?q=a+b&r=%20&s", body)
				req.Header["User-Agent"] = []string{"test-agent/1.0"}
				req.Header["X-Multi"] = []string{"a", "b"}
				req.Header["X-Empty"] = []string{""}
				req.Header["Authorization"] = []string{"Bearer t0k3n"}
				req.Header["Cookie"] = []string{"a=1; b=2"}
				req.Header["X-Forwarded-For"] = []string{"203.0.113.7"}
				req.Header["Accept-Encoding"] = []string{"br"}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var s seenRequest
				if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
					t.Fatalf("%s: %d: %v", tc.name, resp.StatusCode, err)
				}
				return s
			}
			want, got := do(dc), do(c.c)
			delete(got.Header, "Conduit-Client-Id")
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				t.Errorf("%s: through the mesh\n%s\ndirect\n%s", tc.name, gj, wj)
			}
		}
	})
}

// seenResponse is what a client sees of a response.
type seenResponse struct {
	Status           int
	Proto            string
	Header           http.Header
	ContentLength    int64
	TransferEncoding []string
	Body             string
	Trailer          http.Header
}

// TestResponseAsDirect: a client sees a response through both proxies as
// it sees it directly from the application: status, header fields
// (repeated, empty, cookies), framing (a length, or chunked with
// trailers announced), body and trailers, in every relay mode, for
// HTTP/1.1 and h2c clients. Date, which the application's server sets per
// response, is left out.
func TestResponseAsDirect(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Set-Cookie"] = []string{"a=1; Path=/", "b=2; HttpOnly"}
		h["X-Empty"] = []string{""}
		h["X-Multi"] = []string{"a", "b"}
		h["Cache-Control"] = []string{"no-store"}
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		if code, _ := strconv.Atoi(r.URL.Query().Get("status")); code != 0 {
			w.WriteHeader(code) // 204, 304: no body
			return
		}
		body := strings.Repeat("r", 5000)
		if r.URL.Path == "/length" {
			h["Content-Length"] = []string{"5000"}
		} else {
			h["Trailer"] = []string{"X-Sum"}
		}
		w.WriteHeader(http.StatusCreated)
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, body)
		if r.URL.Path != "/length" {
			h.Set("X-Sum", "5000")
		}
	})
	direct := startHandler(t, app)
	eachRelay(t, app, func(t *testing.T, _ relayMode, c relayClient, path string) {
		dc := directClient(c, direct)
		do := func(hc *http.Client, method, query string) seenResponse {
			t.Helper()
			req, _ := http.NewRequest(method, "http://web"+path+query, nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Header.Del("Date")
			return seenResponse{Status: resp.StatusCode, Proto: resp.Proto, Header: resp.Header, ContentLength: resp.ContentLength,
				TransferEncoding: resp.TransferEncoding, Body: string(body), Trailer: resp.Trailer}
		}
		for _, tc := range []struct{ method, query string }{
			{http.MethodGet, ""}, {http.MethodHead, ""}, {http.MethodGet, "?status=204"}, {http.MethodGet, "?status=304"},
		} {
			want, got := do(dc, tc.method, tc.query), do(c.c, tc.method, tc.query)
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				t.Errorf("%s %s: through the mesh\n%s\ndirect\n%s", tc.method, tc.query, gj, wj)
			}
		}
	})
}

// directClient returns a client of the application at addr speaking the
// protocol of c.
func directClient(c relayClient, addr string) *http.Client {
	if c.name == "HTTP/1.1" {
		return h1Client(addr)
	}
	return h2cClient(addr)
}

// TestRawRequestAsDirect: requests written byte by byte, as clients other
// than Go's send them, reach the application through both proxies as they
// reach it directly, in every relay mode (the HTTP/1.1 client only): but
// for the conduit-client-id the server's proxy adds, the protocol
// version, which each hop sends its own of (RFC 9110 6.2), the hop-by-hop
// fields a proxy removes (Connection, Keep-Alive and the fields Connection
// names, RFC 9110 7.6.1), and an absolute-form target, which goes to the
// application in origin-form (RFC 9112 3.2.1). One difference
// is known and left: with the HTTP/2 fast path off, net/http's HTTP/2
// server answers Expect: 100-continue itself and takes the field out of
// the request, so the application does not see it. Until 2026-12-07 the
// opt-out modes also added a User-Agent (Go-http-client/2.0, or an empty
// one) to a request without one, and lost a chunked request's trailer.
func TestRawRequestAsDirect(t *testing.T) {
	direct := startHandler(t, echoSeen)
	big := strings.Repeat("v", 40<<10)
	reqs := []struct{ name, raw string }{
		{"obs-text value", "GET /a HTTP/1.1\r\nHost: web\r\nX-Obs: caf\xe9 cr\xe8me\r\n\r\n"},
		{"asterisk target", "OPTIONS * HTTP/1.1\r\nHost: web\r\n\r\n"},
		{"empty POST", "POST /p HTTP/1.1\r\nHost: web\r\nContent-Length: 0\r\n\r\n"},
		{"DELETE with a body", "DELETE /d HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked with a trailer", "POST /t HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: v\r\n\r\n"},
		{"40 KiB field", "GET /x HTTP/1.1\r\nHost: web\r\nX-Big: " + big + "\r\n\r\n"},
		{"escapes and a Host with a port", "GET /%7Efoo/bar%2Fbaz;p?x=%41&y HTTP/1.1\r\nHost: web:80\r\n\r\n"},
		{"field name case and spacing", "GET /c HTTP/1.1\r\nhost: web\r\nx-lower: a\r\nX-UPPER:b\r\nX-Tab:\tc\t\r\n\r\n"},
		{"empty and repeated fields", "GET /e HTTP/1.1\r\nHost: web\r\nX-E:\r\nX-R: 1\r\nX-R: 2\r\nX-R: 3\r\n\r\n"},
		{"Expect: 100-continue", "PUT /u HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: web\r\nX-A: 1\r\n\r\n"},
		{"HTTP/1.0 keep-alive POST", "POST /old HTTP/1.0\r\nHost: web\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"},
		{"absolute-form target", "GET http://web/abs?q=1 HTTP/1.1\r\nHost: web\r\n\r\n"},
		{"Connection-named field", "GET /n HTTP/1.1\r\nHost: web\r\nConnection: X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\n\r\n"},
	}
	send := func(t *testing.T, addr, raw string) (seenRequest, string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		for err == nil && resp.StatusCode == http.StatusContinue {
			resp, err = http.ReadResponse(br, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s seenRequest
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &s) != nil {
			return s, fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		s.Proto = ""
		delete(s.Header, "Conduit-Client-Id")
		return s, ""
	}
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			m := newMesh(t)
			client, _ := m.twoProxies(t, startHandler(t, echoSeen), mode.env)
			for _, r := range reqs {
				want, werr := send(t, direct, r.raw)
				got, gerr := send(t, client.OutboundAddr().String(), r.raw)
				if mode.env["CONDUIT_PROXY_HTTP2_FAST_PATH"] == "false" {
					delete(want.Header, "Expect") // see above
				}
				dropHopByHop(want.Header)
				if u, err := url.Parse(want.URI); err == nil && u.IsAbs() {
					want.URI = u.RequestURI()
				}
				if !reflect.DeepEqual(got, want) || gerr != werr {
					gj, _ := json.Marshal(got)
					wj, _ := json.Marshal(want)
					t.Errorf("%s: through the mesh %s\n%s\ndirect %s\n%s", r.name, gerr, gj, werr, wj)
				}
			}
		})
	}
}

// rawResponses are answers written byte by byte, as servers other than
// Go's write them, by request path.
var rawResponses = map[string]string{
	"/obs-text":       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Obs: caf\xe9\r\n\r\nok",
	"/reason":         "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\n\r\nok",
	"/no-reason":      "HTTP/1.1 299 \r\nContent-Length: 2\r\n\r\nok",
	"/leading-zeros":  "HTTP/1.1 200 OK\r\nContent-Length: 002\r\n\r\nok",
	"/cookies":        "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\nX-E:\r\nx-lower: v\r\nContent-Length: 2\r\n\r\nok",
	"/chunked":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\nX-Sum: 5\r\n\r\n",
	"/big-field":      "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("v", 40<<10) + "\r\nContent-Length: 2\r\n\r\nok",
	"/http10":         "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
	"/until-close":    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nread until the end",
	"/status-599":     "HTTP/1.1 599 Custom\r\nContent-Length: 0\r\n\r\n",
	"/hop-by-hop":     "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\nok",
	"/early-hints":    "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"/empty-body-204": "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
}

// startRawApp serves rawResponses on loopback; a response with
// Connection: close, or without a length, ends its connection.
func startRawApp(t *testing.T) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, r.Body)
			resp, ok := rawResponses[r.URL.Path]
			if !ok {
				resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
			}
			if _, err := io.WriteString(c, resp); err != nil || strings.Contains(resp, "Connection: close") {
				return
			}
		}
	})
}

// TestRawResponseAsDirect: answers written byte by byte, as servers other
// than Go's write them, reach a client through both proxies as they reach
// it directly, in every relay mode, for an HTTP/1.1 client (the direct
// server speaks nothing else): status, header fields, framing, body and
// trailers. Left out of the comparison: the reason phrase (HTTP/2 has
// none, and clients are to ignore it, RFC 9110 15) and the protocol
// version, which each hop sends its own of; the hop-by-hop fields, which
// a proxy removes (Connection, Keep-Alive and the fields Connection
// names, RFC 9110 7.6.1); the text of Content-Length (its number is
// compared: leading zeros go); and the framing of a body read until the
// connection closed, which a proxy may send chunked.
func TestRawResponseAsDirect(t *testing.T) {
	direct := startRawApp(t)
	get := func(t *testing.T, addr, path string) (seenResponse, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://web"+path, nil)
		resp, err := h1Client(addr).Do(req)
		if err != nil {
			return seenResponse{}, err.Error()
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return seenResponse{}, err.Error()
		}
		return seenResponse{Status: resp.StatusCode, Header: resp.Header, ContentLength: resp.ContentLength,
			TransferEncoding: resp.TransferEncoding, Body: string(body), Trailer: resp.Trailer}, ""
	}
	paths := slices.Sorted(maps.Keys(rawResponses))
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			m := newMesh(t)
			client, _ := m.twoProxies(t, startRawApp(t), mode.env)
			for _, path := range paths {
				want, werr := get(t, direct, path)
				got, gerr := get(t, client.OutboundAddr().String(), path)
				dropHopByHop(want.Header)
				delete(want.Header, "Content-Length")
				delete(got.Header, "Content-Length")
				if want.ContentLength == -1 && want.TransferEncoding == nil {
					got.TransferEncoding = nil
				}
				if !reflect.DeepEqual(got, want) || gerr != werr {
					gj, _ := json.Marshal(got)
					wj, _ := json.Marshal(want)
					t.Errorf("%s: through the mesh %s\n%s\ndirect %s\n%s", path, gerr, gj, werr, wj)
				}
			}
		})
	}
}

// dropHopByHop removes from h the fields a proxy removes (RFC 9110
// 7.6.1): Connection, Keep-Alive and the fields Connection names.
func dropHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for k := range strings.SplitSeq(v, ",") {
			delete(h, http.CanonicalHeaderKey(strings.TrimSpace(k)))
		}
	}
	delete(h, "Connection")
	delete(h, "Keep-Alive")
}
