// Command demo runs one service of Conduit's demo application:
//
//	demo web      --addr :8080 --quotes quotes:9090 --counter http://counter:8080
//	demo quotes   --addr :9090
//	demo counter  --addr :8080 --failure-rate 0.1 --latency 20ms
//	demo loadgen  --url http://web:8080/api/quote --rps 10
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/conduit-mesh/conduit/demo/app"
	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	demov1 "github.com/conduit-mesh/conduit/proto/demo/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: demo web|quotes|counter|loadgen [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	log := logging.New(os.Stderr, "demo-"+mode, slog.LevelInfo, "json")
	procutil.Setup(log)
	ctx, stop := procutil.SignalContext(context.Background())
	defer stop()
	if err := run(ctx, mode, os.Args[2:], log); err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, mode string, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	host, _ := os.Hostname()
	name := fs.String("name", host, "name reported in answers")
	addr := fs.String("addr", ":8080", "listen address")
	quotesAddr := fs.String("quotes", "quotes:9090", "web: address of the quotes gRPC service")
	counterURL := fs.String("counter", "http://counter:8080", "web: base URL of the counter service")
	failureRate := fs.Float64("failure-rate", 0, "counter: share of requests that fail with 500 (0..1)")
	latency := fs.Duration("latency", 0, "counter: latency added to every answer")
	url := fs.String("url", "http://web:8080/api/quote", "loadgen: URL to request")
	rps := fs.Float64("rps", 10, "loadgen: requests per second")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *failureRate < 0 || *failureRate > 1 {
		return fmt.Errorf("demo: --failure-rate %v out of range (accepted: 0 to 1)", *failureRate)
	}
	if *rps <= 0 {
		return fmt.Errorf("demo: --rps must be positive, got %v", *rps)
	}
	httpClient := &http.Client{Timeout: 10 * time.Second}
	switch mode {
	case "quotes":
		lis, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		srv := grpc.NewServer()
		demov1.RegisterQuotesServer(srv, &app.QuotesServer{Name: *name})
		go func() { <-ctx.Done(); srv.GracefulStop() }()
		log.Info("serving", "addr", *addr)
		return srv.Serve(lis)
	case "counter":
		return serveHTTP(ctx, *addr, &app.Counter{Name: *name, FailureRate: *failureRate, Latency: *latency}, log)
	case "web":
		conn, err := grpc.NewClient(*quotesAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("demo: quotes client: %w", err)
		}
		defer conn.Close()
		return serveHTTP(ctx, *addr, &app.Web{Quotes: demov1.NewQuotesClient(conn), CounterURL: *counterURL, HTTP: httpClient}, log)
	case "loadgen":
		(&app.Loadgen{URL: *url, RPS: *rps, MaxInFlight: 64, HTTP: httpClient, Log: log}).Run(ctx)
		return nil
	}
	return fmt.Errorf("demo: unknown mode %q (accepted: web, quotes, counter, loadgen)", mode)
}

func serveHTTP(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving", "addr", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}
