package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/conduit-mesh/conduit/pkg/grpcecho"
)

// serveGRPC serves the grpcecho service on ln until ctx ends, then stops
// gracefully.
func serveGRPC(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	srv := grpc.NewServer()
	grpcecho.Register(srv, podName())
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	log.Info("grpc listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("testapp: grpc: %w", err)
	}
	return nil
}

// grpcCmd is `testapp grpc [-n N] [-size B] [-timeout D] ADDR`: grpcecho.Check
// against the server at ADDR (unary calls, then a full-duplex stream of N
// messages of B bytes). It prints "N ok" with the pod and client identity
// the server reported, and fails at the first mismatch.
func grpcCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	n := fs.Int("n", 20, "messages on the full-duplex stream")
	size := fs.Int("size", 1000, "bytes per message")
	timeout := fs.Duration("timeout", 30*time.Second, "for the whole exchange")
	unary := fs.Int("unary-size", 1<<20, "bytes of the first unary call's payload (a multiple of 16)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *n < 1 || *size < 0 || *unary < 16 || *unary%16 != 0 {
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := grpc.NewClient("passthrough:///"+fs.Arg(0), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("testapp: grpc: %w", err)
	}
	defer conn.Close()
	res, err := grpcecho.CheckUnary(ctx, conn, *n, *size, *unary)
	if err != nil {
		return fmt.Errorf("testapp: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%d ok pod=%s client-id=%s\n", *n, res.Pod, res.ClientID)
	return err
}
