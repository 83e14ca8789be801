package netx

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
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
