package h1

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// traced returns a request whose context records the informational
// responses passed on to it, as "code Link" strings.
func traced(t *testing.T, got *[]string) *http.Request {
	t.Helper()
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			*got = append(*got, http.StatusText(code)+" "+h.Get("Link"))
			return nil
		},
	})
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://w/", nil)
	return r
}

// TestRoundTripPassesInterim: the informational responses before the
// final one reach the request's context, 103 and 102 but not 100 Continue;
// more than five fail the request, which the upstream has.
func TestRoundTripPassesInterim(t *testing.T) {
	up, _ := scripted(t, func(n int32, r *http.Request) (string, bool) {
		if r.URL.Path == "/many" {
			return strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
		}
		return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	pool := poolTo(up)
	var got []string
	resp, err := pool.RoundTrip(traced(t, &got))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := []string{"Early Hints </s.css>; rel=preload", "Processing "}
	if resp.StatusCode != 200 || string(body) != "ok" || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("status %d %q, passed %q; want 200 \"ok\" after %q", resp.StatusCode, body, got, want)
	}

	got = nil
	r := traced(t, &got)
	r.URL.Path = "/many"
	if _, err := pool.RoundTrip(r); err == nil || !strings.Contains(err.Error(), "more than 5 informational responses") {
		t.Errorf("six 103s: %v, want a failure", err)
	}
	if len(got) != 5 {
		t.Errorf("passed %d of six 103s, want 5", len(got))
	}
}

// TestServerPassesInterim: an informational response the round tripper
// passes on while the fast path waits for it reaches the client before
// the final response, flushed.
func TestServerPassesInterim(t *testing.T) {
	f := startFast(t, &testRouter{rt: func(r *http.Request) (*http.Response, error) {
		if err := netx.PassInterim(r.Context(), http.StatusEarlyHints, http.Header{"Link": {"</s.css>"}}); err != nil {
			return nil, err
		}
		return &http.Response{StatusCode: 200, ContentLength: 2, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}})
	out := rawGet(t, f.addr, "/")
	if want := "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\n"; !strings.HasPrefix(out, want) || !strings.HasSuffix(out, "\r\n\r\nok") {
		t.Errorf("client read\n%q\nwant it to start with\n%q", out, want)
	}
}

// rawGet sends GET path to the fast path at addr on a connection of its
// own (rawExchange, reading no response) and returns all it reads back.
func rawGet(t *testing.T, addr, path string) string {
	t.Helper()
	_, _, c := rawExchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", 0, http.MethodGet)
	out, _ := io.ReadAll(c)
	return string(out)
}

// TestServerBoundsInterim: an upstream's informational responses go to the
// client as they come, at most five; a sixth fails the exchange (the
// client gets a 502 after the five).
func TestServerBoundsInterim(t *testing.T) {
	up, _ := scripted(t, func(n int32, r *http.Request) (string, bool) {
		k := 1
		if r.URL.Path == "/many" {
			k = 6
		}
		return strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", k) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	f := startFast(t, &testRouter{pool: poolTo(up)})
	for _, tc := range []struct {
		path  string
		hints int
		final string
	}{
		{"/one", 1, "HTTP/1.1 200 OK\r\n"},
		{"/many", 5, "HTTP/1.1 502 Bad Gateway\r\n"},
	} {
		out := rawGet(t, f.addr, tc.path)
		hints := strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", tc.hints)
		if !strings.HasPrefix(out, hints+tc.final) {
			t.Errorf("%s: client read\n%q\nwant %d hints, then %q", tc.path, out, tc.hints, tc.final)
		}
	}
}

// TestServerRefusesLateInterim: an informational response passed on after
// the round trip returned (net/http's transports call from goroutines of
// their own) is refused: the exchange is writing, or serving the next
// request, by then.
func TestServerRefusesLateInterim(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	f := startFast(t, &testRouter{rt: func(r *http.Request) (*http.Response, error) {
		ctxs <- r.Context()
		return &http.Response{StatusCode: 200, ContentLength: 2, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}})
	if out := rawGet(t, f.addr, "/"); !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") {
		t.Fatalf("client read %q", out)
	}
	if err := netx.PassInterim(<-ctxs, http.StatusEarlyHints, http.Header{"Link": {"</s.css>"}}); !errors.Is(err, errLateInterim) {
		t.Errorf("late informational response: %v, want %v", err, errLateInterim)
	}
}

// TestServerRefusesMalformedInterim: an informational response with a
// field that would break the framing is refused before a byte of it is
// written: the client reads a clean 502.
func TestServerRefusesMalformedInterim(t *testing.T) {
	f := startFast(t, &testRouter{rt: func(r *http.Request) (*http.Response, error) {
		return nil, netx.PassInterim(r.Context(), http.StatusEarlyHints, http.Header{"Link": {"</s.css>\r\nX-Injected: 1"}})
	}})
	if out := rawGet(t, f.addr, "/"); !strings.HasPrefix(out, "HTTP/1.1 502 Bad Gateway\r\n") || strings.Contains(out, "Injected") {
		t.Errorf("client read %q, want a 502 alone", out)
	}
}
