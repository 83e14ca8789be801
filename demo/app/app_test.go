package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	demov1 "github.com/conduit-mesh/conduit/proto/demo/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func startQuotes(t *testing.T) demov1.QuotesClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	demov1.RegisterQuotesServer(srv, &QuotesServer{Name: "quotes-0"})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return demov1.NewQuotesClient(conn)
}

func TestWebCallsBothBackends(t *testing.T) {
	counter := httptest.NewServer(&Counter{Name: "counter-0"})
	defer counter.Close()
	web := httptest.NewServer(&Web{Quotes: startQuotes(t), CounterURL: counter.URL, HTTP: counter.Client()})
	defer web.Close()

	for want := int64(1); want <= 2; want++ {
		req, _ := http.NewRequest(http.MethodGet, web.URL+"/api/quote", nil)
		req.Header.Set("conduit-client-id", "loadgen.demo.serviceaccount.identity.conduit.cluster.local")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var a Answer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if a.Count != want || a.QuoteServedBy != "quotes-0" || a.CounterServedBy != "counter-0" || a.Quote == "" {
			t.Fatalf("answer %d = %+v", want, a)
		}
		if a.ClientID != "loadgen.demo.serviceaccount.identity.conduit.cluster.local" {
			t.Fatalf("client id not passed through: %+v", a)
		}
	}
}

func TestWebReportsFailingBackend(t *testing.T) {
	counter := httptest.NewServer(&Counter{Name: "c", FailureRate: 1})
	defer counter.Close()
	web := httptest.NewServer(&Web{Quotes: startQuotes(t), CounterURL: counter.URL, HTTP: counter.Client()})
	defer web.Close()
	resp, err := http.Get(web.URL + "/api/quote")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "counter: 500") {
		t.Fatalf("status %d body %q", resp.StatusCode, b)
	}
}

func TestCounterFailureRate(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		rnd  float64
		want int
	}{
		{0, 0, http.StatusOK},
		{0.5, 0.49, http.StatusInternalServerError},
		{0.5, 0.5, http.StatusOK},
		{1, 0.99, http.StatusInternalServerError},
	} {
		c := &Counter{FailureRate: tc.rate, rand: func() float64 { return tc.rnd }}
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/count", nil))
		if rec.Code != tc.want {
			t.Errorf("rate %v rnd %v: status %d, want %d", tc.rate, tc.rnd, rec.Code, tc.want)
		}
	}
}

func TestLoadgenIsOpenLoop(t *testing.T) {
	// The server is slow (200 ms) but the generator keeps its rate: at 100 rps
	// for 300 ms it must have started about 30 requests, not 1 or 2.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(200 * time.Millisecond)
	}))
	defer srv.Close()
	l := &Loadgen{URL: srv.URL, RPS: 100, MaxInFlight: 100, HTTP: srv.Client(), Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	l.Run(ctx)
	if n := hits.Load(); n < 15 {
		t.Fatalf("only %d requests started in 300 ms at 100 rps: closed loop?", n)
	}
}
