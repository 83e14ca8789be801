package netx

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"testing"
	"time"
)

type interimFunc func(code int, h http.Header) error

func (f interimFunc) Interim(_ *AbortCtx, code int, h http.Header) error { return f(code, h) }

// TestPassInterim: an informational response reaches the Interim its
// AbortCtx's parent holds, through derived contexts too; else an
// httptrace.ClientTrace's Got1xxResponse; else nobody, without an error.
// The Interim's error is the caller's.
func TestPassInterim(t *testing.T) {
	hints := http.Header{"Link": {"</style.css>; rel=preload"}}
	var got []string
	record := func(via string) func(int, http.Header) error {
		return func(code int, h http.Header) error {
			got = append(got, via+" "+http.StatusText(code)+" "+h.Get("Link"))
			return nil
		}
	}
	var a AbortCtx
	a.SetParent(WithInterim(context.Background(), interimFunc(record("abort"))))
	derived, cancel := context.WithTimeout(&a, time.Minute)
	defer cancel()
	traced := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error { return record("trace")(code, http.Header(h)) },
	})
	var plain AbortCtx
	for _, ctx := range []context.Context{&a, derived, traced, &plain, context.Background()} {
		if err := PassInterim(ctx, http.StatusEarlyHints, hints); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"abort Early Hints </style.css>; rel=preload",
		"abort Early Hints </style.css>; rel=preload",
		"trace Early Hints </style.css>; rel=preload",
	}
	if len(got) != len(want) {
		t.Fatalf("passed %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("passed %q, want %q", got, want)
		}
	}

	gone := errors.New("client gone")
	var failing AbortCtx
	failing.SetParent(WithInterim(context.Background(), interimFunc(func(int, http.Header) error { return gone })))
	if err := PassInterim(&failing, http.StatusEarlyHints, hints); !errors.Is(err, gone) {
		t.Errorf("error %v, want the Interim's", err)
	}
}

func TestPassesInterim(t *testing.T) {
	for code, want := range map[int]bool{100: false, 101: false, 102: true, 103: true, 150: true, 199: true, 200: false, 99: false} {
		if PassesInterim(code) != want {
			t.Errorf("PassesInterim(%d) = %v, want %v", code, !want, want)
		}
	}
}

// TestTraceKey: an AbortCtx whose parent holds an Interim answers
// httptrace's own lookup, the key learnt from package httptrace; one
// without answers nothing.
func TestTraceKey(t *testing.T) {
	if traceKey == nil {
		t.Fatal("httptrace's context key was not learnt")
	}
	tr := &httptrace.ClientTrace{}
	if httptrace.ContextClientTrace(context.WithValue(context.Background(), traceKey, tr)) != tr {
		t.Fatal("httptrace finds no trace under traceKey: it is not httptrace's key")
	}
	var plain, parented AbortCtx
	parented.SetParent(context.Background())
	if httptrace.ContextClientTrace(&plain) != nil || httptrace.ContextClientTrace(&parented) != nil {
		t.Error("an AbortCtx without an Interim holds a trace")
	}
	var a AbortCtx
	a.SetParent(WithInterim(context.Background(), interimFunc(func(int, http.Header) error { return nil })))
	first := httptrace.ContextClientTrace(&a)
	if first == nil || first.Got1xxResponse == nil {
		t.Error("an AbortCtx whose parent holds an Interim answers no trace")
	}
}

// TestInterimFromNetHTTP: net/http's transport, which knows nothing of
// AbortCtx, passes a 1xx response to the Interim of the request's AbortCtx
// (the fast paths send some requests through it: protocol upgrades,
// Expect, the opt-out modes). It reports 100 Continue too, which the trace
// drops (InterimTrace).
func TestInterimFromNetHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusContinue)
		w.Header().Set("Link", "</s.css>")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	var got []string
	var a AbortCtx
	a.SetParent(WithInterim(context.Background(), interimFunc(func(code int, h http.Header) error {
		got = append(got, http.StatusText(code)+" "+h.Get("Link"))
		return nil
	})))
	r, _ := http.NewRequestWithContext(&a, http.MethodGet, srv.URL, nil)
	resp, err := srv.Client().Transport.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(got) != 1 || got[0] != "Early Hints </s.css>" {
		t.Errorf("passed %q, want one 103 with its Link, and no 100", got)
	}
}
