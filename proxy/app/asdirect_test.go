package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
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
