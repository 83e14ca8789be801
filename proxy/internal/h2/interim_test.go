package h2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// tracedGet returns a GET whose context records the informational
// responses passed on to it, as "text Link" strings.
func tracedGet(t *testing.T, path string, got *[]string) *http.Request {
	t.Helper()
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			*got = append(*got, http.StatusText(code)+" "+h.Get("Link"))
			return nil
		},
	})
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc"+path, nil)
	return r
}

// TestClientPassesInterim: the informational responses a server sends
// before its final one reach the request's context, 103 and 102 but not
// 100 Continue; more than five reset the stream and fail the request.
func TestClientPassesInterim(t *testing.T) {
	addr := serveScript(t, nil, func(fr *http2.Framer, f http2.Frame) {
		h, ok := f.(*http2.HeadersFrame)
		if !ok {
			return
		}
		heads := [][]string{{":status", "100"}, {":status", "103", "link", "</s.css>; rel=preload"}, {":status", "102"}}
		if h.StreamID == 3 {
			heads = nil
			for range 6 {
				heads = append(heads, []string{":status", "103", "link", "</s.css>"})
			}
		}
		for _, fields := range heads {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, EndHeaders: true, BlockFragment: headerBlock(fields...)})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, EndHeaders: true, BlockFragment: headerBlock(":status", "200", "content-length", "2")})
		_ = fr.WriteData(h.StreamID, true, []byte("ok"))
	})
	cl := clientTo(t, addr)
	wantHints(t, cl, "Early Hints </s.css>; rel=preload", "Processing ")

	var got []string
	if _, err := cl.RoundTrip(tracedGet(t, "/many", &got)); err == nil || !strings.Contains(err.Error(), "more than 5 informational responses") {
		t.Errorf("six 103s: %v, want a failure", err)
	}
	if len(got) != 5 {
		t.Errorf("passed %d of six 103s, want 5", len(got))
	}
	cc := clientConnOf(t, cl)
	cc.mu.Lock()
	left := len(cc.interims)
	cc.mu.Unlock()
	if left != 0 {
		t.Errorf("%d streams' informational responses kept after their round trips", left)
	}
}

// TestServerPassesInterim: an informational response the handler passes
// on goes to the client before the final response, which our Client
// passes on in turn.
func TestServerPassesInterim(t *testing.T) {
	cl := benchPair(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		if err := netx.PassInterim(r.Context(), http.StatusEarlyHints, http.Header{"Link": {"</s.css>"}}); err != nil {
			return nil, err
		}
		return &http.Response{StatusCode: 200, ContentLength: 2, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}))
	wantHints(t, cl, "Early Hints </s.css>")
}

// wantHints sends GET / on cl and checks that the informational responses
// want came before a 200 "ok".
func wantHints(t *testing.T, cl *Client, want ...string) {
	t.Helper()
	var got []string
	resp, err := cl.RoundTrip(tracedGet(t, "/", &got))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("status %d %q, passed %q; want 200 \"ok\" after %q", resp.StatusCode, body, got, want)
	}
}

// TestServerRefusesLateInterim: an informational response passed on once
// the final response is under way is refused, not written after it.
func TestServerRefusesLateInterim(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	cl := benchPair(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		ctxs <- r.Context()
		return &http.Response{StatusCode: 200, ContentLength: 2, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}))
	wantHints(t, cl)
	if err := netx.PassInterim(<-ctxs, http.StatusEarlyHints, http.Header{"Link": {"</s.css>"}}); !errors.Is(err, errLateInterim) {
		t.Errorf("late informational response: %v, want %v", err, errLateInterim)
	}
}
