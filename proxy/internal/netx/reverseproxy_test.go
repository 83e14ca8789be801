package netx

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// forwardedFields are the fields httputil.ReverseProxy sets or adds
// unless told otherwise.
var forwardedFields = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}

// toApp sends every request to the application at base, as the proxies'
// round trippers send it to the endpoint they pick.
type toApp struct{ base *url.URL }

func (a toApp) RoundTrip(r *http.Request) (*http.Response, error) {
	r.URL.Scheme, r.URL.Host = a.base.Scheme, a.base.Host
	return http.DefaultTransport.RoundTrip(r)
}

// TestReverseProxyKeepsForwarded: the general path's ReverseProxy leaves
// the X-Forwarded-* and Forwarded fields as the client sent them: none
// added to a request without them, and the client's own passed on
// unchanged (ReverseProxy would append its peer's address to
// X-Forwarded-For and set X-Forwarded-Host and -Proto).
func TestReverseProxyKeepsForwarded(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, k := range forwardedFields {
			w.Header()["Got-"+k] = r.Header[k]
		}
	}))
	defer app.Close()
	base, _ := url.Parse(app.URL)
	onError := func(w http.ResponseWriter, r *http.Request, err error) {
		t.Errorf("proxy error: %v", err)
		w.WriteHeader(http.StatusBadGateway)
	}
	rp := NewReverseProxy(toApp{base}, onError, slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		name string
		sent http.Header
	}{
		{"none sent", nil},
		{"the client's own", http.Header{
			"X-Forwarded-For":   {"203.0.113.7", "198.51.100.2"},
			"X-Forwarded-Host":  {"shop.example"},
			"X-Forwarded-Proto": {"https"},
			"Forwarded":         {"for=203.0.113.7;proto=https"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://web/", nil)
			req.RemoteAddr = "192.0.2.10:40000"
			for k, vs := range tc.sent {
				req.Header[k] = vs
			}
			w := httptest.NewRecorder()
			rp.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			for _, k := range forwardedFields {
				got, want := strings.Join(w.Header()["Got-"+k], " | "), strings.Join(tc.sent[k], " | ")
				if got != want {
					t.Errorf("%s at the application: %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestReverseProxyPassesRequestTrailers: a chunked request's trailer
// reaches the upstream with its values. ReverseProxy's copy of the request
// holds the announced names only (the server fills the incoming request's
// map when the body ends), so the transport sent none.
func TestReverseProxyPassesRequestTrailers(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Got-Trailer", r.Trailer.Get("X-Sum"))
	}))
	defer app.Close()
	base, _ := url.Parse(app.URL)
	front := httptest.NewServer(NewReverseProxy(toApp{base}, func(w http.ResponseWriter, r *http.Request, err error) {
		t.Errorf("proxy error: %v", err)
		w.WriteHeader(http.StatusBadGateway)
	}, slog.New(slog.DiscardHandler)))
	defer front.Close()
	req, _ := http.NewRequest(http.MethodPost, front.URL, io.MultiReader(strings.NewReader("hello")))
	req.Trailer = http.Header{"X-Sum": {"5"}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Got-Trailer"); got != "5" {
		t.Errorf("the upstream's X-Sum trailer %q, want 5", got)
	}
}

// TestNoDefaultUserAgent: net/http's transports send no User-Agent of
// their own for a request that had none; one the client sent is kept.
func TestNoDefaultUserAgent(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ok := r.Header["User-Agent"]
		w.Header().Set("Got", strconv.FormatBool(ok)+"|"+r.UserAgent())
	}))
	defer app.Close()
	for _, tc := range []struct{ sent, want string }{{"", "false|"}, {"curl/8", "true|curl/8"}} {
		req, _ := http.NewRequest(http.MethodGet, app.URL, nil)
		if tc.sent != "" {
			req.Header.Set("User-Agent", tc.sent)
		}
		NoDefaultUserAgent(req)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Got"); got != tc.want {
			t.Errorf("sent %q: the upstream saw %q, want %q", tc.sent, got, tc.want)
		}
	}
}

// TestRelayAddsNoServerDefaults: a response written through Relay's writer
// gets no Date and no sniffed Content-Type from net/http's server (HTTP/1.1
// and h2c) when its handler sets none, after an informational response
// too (ReverseProxy clears the header after one); fields the handler sets
// are written, and the writer still flushes through
// http.ResponseController.
func TestRelayAddsNoServerDefaults(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w, r, cancel := Relay(w, r)
		defer cancel()
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			clear(w.Header())
		case "/set":
			w.Header().Set("Content-Type", "application/x-kept")
			w.Header().Set("Date", "Tue, 01 Dec 2026 00:00:00 GMT")
		}
		w.WriteHeader(http.StatusOK)
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
		_, _ = io.WriteString(w, "<html>ok</html>")
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	for _, rt := range []http.RoundTripper{&http.Transport{}, h2c} {
		for _, tc := range []struct{ path, date, ctype string }{
			{"/plain", "", ""},
			{"/hints", "", ""},
			{"/set", "Tue, 01 Dec 2026 00:00:00 GMT", "application/x-kept"},
		} {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, strings.NewReader("body"))
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_, hasDate := resp.Header["Date"]
			if resp.Header.Get("Date") != tc.date || (tc.date == "" && hasDate) || resp.Header.Get("Content-Type") != tc.ctype || string(body) != "<html>ok</html>" {
				t.Errorf("%s %s: Date %q, Content-Type %q, body %q; want %q, %q", resp.Proto, tc.path, resp.Header.Get("Date"), resp.Header.Get("Content-Type"), body, tc.date, tc.ctype)
			}
		}
	}
}
