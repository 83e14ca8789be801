package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestForwardedFieldsUntouched: the proxies are transparent to the
// X-Forwarded-* and Forwarded fields, in every relay mode and for HTTP/1.1
// and h2c clients: a request without them reaches the application
// without them (none names a proxy's address), and a client's own reach
// it unchanged. net/http's ReverseProxy, on the general paths, would
// otherwise add or strip them.
func TestForwardedFieldsUntouched(t *testing.T) {
	fields := []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}
	sent := http.Header{
		"X-Forwarded-For":   {"203.0.113.7, 198.51.100.2"},
		"X-Forwarded-Host":  {"shop.example"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=203.0.113.7;proto=https"},
	}
	eachRelay(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, k := range fields {
			w.Header()["Got-"+k] = r.Header[k]
		}
		if r.URL.Path == "/length" {
			w.Header().Set("Content-Length", "2")
		}
		_, _ = io.WriteString(w, "ok")
	}), func(t *testing.T, _ relayMode, c relayClient, path string) {
		for _, own := range []bool{false, true} {
			req, _ := http.NewRequest(http.MethodGet, "http://web"+path, nil)
			if own {
				for k, vs := range sent {
					req.Header[k] = vs
				}
			}
			resp, err := c.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d (%s)", resp.StatusCode, resp.Header.Get("Conduit-Proxy-Error"))
			}
			for _, k := range fields {
				var want []string
				if own {
					want = sent[k]
				}
				if got := resp.Header["Got-"+k]; strings.Join(got, " | ") != strings.Join(want, " | ") {
					t.Errorf("client's own fields sent: %v; %s at the application %q, want %q", own, k, got, want)
				}
			}
		}
	})
}
