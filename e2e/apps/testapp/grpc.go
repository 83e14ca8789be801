package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcEcho is the gRPC server of serve -grpc-addr: grpc.testing.TestService
// whose UnaryCall and FullDuplexCall echo payloads. Each call answers with
// the pod's name and the conduit-client-id it received in its response
// header, and with the trailer "echo-trailer: done".
type grpcEcho struct {
	testgrpc.UnimplementedTestServiceServer
	pod string
}

func (g grpcEcho) seen(ctx context.Context) metadata.MD {
	md, _ := metadata.FromIncomingContext(ctx)
	return metadata.Pairs("pod", g.pod, "seen-client-id", strings.Join(md.Get("conduit-client-id"), ","))
}

func (g grpcEcho) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	_ = grpc.SetHeader(ctx, g.seen(ctx))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("echo-trailer", "done"))
	if st := in.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testgrpc.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (g grpcEcho) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	if err := stream.SendHeader(g.seen(stream.Context())); err != nil {
		return err
	}
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("echo-trailer", "done"))
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

// serveGRPC serves grpcEcho on ln until ctx ends, then stops gracefully.
func serveGRPC(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, grpcEcho{pod: podName()})
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

// grpcCmd is `testapp grpc [-n N] [-size B] [-timeout D] ADDR`: one
// full-duplex stream of N messages of B bytes, each echoed back before the
// next is sent, then one unary call answered with an error status. It
// prints "N ok" and the pod and client identity the server reported, and
// fails on the first mismatch.
func grpcCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	n := fs.Int("n", 20, "messages on the full-duplex stream")
	size := fs.Int("size", 1000, "bytes per message")
	timeout := fs.Duration("timeout", 30*time.Second, "for the whole exchange")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *n < 1 || *size < 0 {
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := grpc.NewClient("passthrough:///"+fs.Arg(0), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("testapp: grpc: %w", err)
	}
	defer conn.Close()
	c := testgrpc.NewTestServiceClient(conn)

	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		return fmt.Errorf("testapp: grpc: open stream: %w", err)
	}
	for i := range *n {
		body := fmt.Sprintf("%d:%s", i, strings.Repeat("x", *size))
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(body)}}); err != nil {
			return fmt.Errorf("testapp: grpc: send %d: %w", i, err)
		}
		in, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("testapp: grpc: receive %d: %w", i, err)
		}
		if got := string(in.GetPayload().GetBody()); got != body {
			return fmt.Errorf("testapp: grpc: message %d came back as %.40q", i, got)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("testapp: grpc: close: %w", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("testapp: grpc: end of stream: %v, want EOF", err)
	}
	if got := stream.Trailer().Get("echo-trailer"); len(got) != 1 || got[0] != "done" {
		return fmt.Errorf("testapp: grpc: stream trailer echo-trailer %q, want done", got)
	}
	header, err := stream.Header()
	if err != nil {
		return fmt.Errorf("testapp: grpc: stream header: %w", err)
	}

	_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "as asked"}})
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || st.Message() != "as asked" {
		return fmt.Errorf("testapp: grpc: unary error status %v, want FailedPrecondition \"as asked\"", err)
	}
	_, err = fmt.Fprintf(stdout, "%d ok pod=%s client-id=%s\n", *n, strings.Join(header.Get("pod"), ","), strings.Join(header.Get("seen-client-id"), ","))
	return err
}
