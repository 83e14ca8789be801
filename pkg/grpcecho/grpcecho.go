package grpcecho

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Register adds the echo service to s and returns it. Its UnaryCall and
// FullDuplexCall echo payloads (UnaryCall fails with the status a request
// asks for, and waits first when the call's metadata asks it to: HoldKey);
// each call answers with the header "pod" (pod) and "seen-client-id" (the
// conduit-client-id it received) and the trailer "echo-trailer: done".
func Register(s *grpc.Server, pod string) *Service {
	e := &Service{pod: pod}
	testgrpc.RegisterTestServiceServer(s, e)
	return e
}

// HoldKey is the metadata key of a unary call that asks the echo to wait,
// for a Go duration ("2m"), before it answers: a slow call, which its
// client may give up on (Service.Abandoned).
const HoldKey = "echo-hold"

// Service is the echo service.
type Service struct {
	testgrpc.UnimplementedTestServiceServer
	pod       string
	abandoned atomic.Int64
}

// Abandoned is how many held calls ended because their client cancelled
// them (the call's context ended: RST_STREAM, or the connection closed)
// before the hold was over.
func (e *Service) Abandoned() int64 { return e.abandoned.Load() }

func (e *Service) header(ctx context.Context) metadata.MD {
	md, _ := metadata.FromIncomingContext(ctx)
	return metadata.Pairs("pod", e.pod, "seen-client-id", strings.Join(md.Get("conduit-client-id"), ","))
}

// hold waits as long as the call's HoldKey asks, or until the call's
// context ends (counted by Abandoned, and returned as its status).
func (e *Service) hold(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(HoldKey)
	if len(v) == 0 {
		return nil
	}
	d, err := time.ParseDuration(v[0])
	if err != nil || d < 0 {
		return status.Errorf(codes.InvalidArgument, "grpcecho: %s %q: want a duration such as 2m", HoldKey, v[0])
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		e.abandoned.Add(1)
		return status.FromContextError(ctx.Err()).Err()
	}
}

var trailer = metadata.Pairs("echo-trailer", "done")

func (e *Service) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if err := e.hold(ctx); err != nil {
		return nil, err
	}
	_ = grpc.SetHeader(ctx, e.header(ctx))
	_ = grpc.SetTrailer(ctx, trailer)
	if st := in.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testgrpc.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (e *Service) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	if err := stream.SendHeader(e.header(stream.Context())); err != nil {
		return err
	}
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(trailer)
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

// Result is what the server reported to Check.
type Result struct {
	Pod, ClientID string
}

// Check drives the echo service on conn and fails at the first mismatch:
//   - a unary call with a 1 MiB payload, echoed whole, with its header
//     and trailer;
//   - a unary call answered with the error status it asks for;
//   - a full-duplex stream of n messages of size bytes, each echoed back
//     before the next is sent (it hangs if a hop buffers), ending with its
//     trailer.
func Check(ctx context.Context, conn grpc.ClientConnInterface, n, size int) (Result, error) {
	return CheckUnary(ctx, conn, n, size, 1<<20)
}

// CheckUnary is Check with a first unary payload of unarySize bytes (a
// multiple of 16).
func CheckUnary(ctx context.Context, conn grpc.ClientConnInterface, n, size, unarySize int) (Result, error) {
	c := testgrpc.NewTestServiceClient(conn)
	var header, tr metadata.MD
	big := bytes.Repeat([]byte("0123456789abcdef"), unarySize/16)
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: big}}, grpc.Header(&header), grpc.Trailer(&tr))
	if err != nil {
		return Result{}, fmt.Errorf("grpcecho: unary: %w", err)
	}
	if !bytes.Equal(resp.GetPayload().GetBody(), big) {
		return Result{}, fmt.Errorf("grpcecho: unary echoed %d bytes, want the %d sent", len(resp.GetPayload().GetBody()), len(big))
	}
	if err := wantTrailer(tr); err != nil {
		return Result{}, fmt.Errorf("grpcecho: unary: %w", err)
	}
	res := Result{Pod: strings.Join(header.Get("pod"), ","), ClientID: strings.Join(header.Get("seen-client-id"), ",")}

	_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "as asked"}})
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || st.Message() != "as asked" {
		return Result{}, fmt.Errorf("grpcecho: unary error status %v, want FailedPrecondition \"as asked\"", err)
	}

	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("grpcecho: open stream: %w", err)
	}
	for i := range n {
		body := fmt.Sprintf("%d:%s", i, strings.Repeat("x", size))
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(body)}}); err != nil {
			return Result{}, fmt.Errorf("grpcecho: send %d: %w", i, err)
		}
		in, err := stream.Recv()
		if err != nil {
			return Result{}, fmt.Errorf("grpcecho: receive %d: %w", i, err)
		}
		if got := string(in.GetPayload().GetBody()); got != body {
			return Result{}, fmt.Errorf("grpcecho: message %d came back as %.40q", i, got)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return Result{}, fmt.Errorf("grpcecho: close: %w", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		return Result{}, fmt.Errorf("grpcecho: end of stream: %v, want EOF", err)
	}
	if err := wantTrailer(stream.Trailer()); err != nil {
		return Result{}, fmt.Errorf("grpcecho: stream: %w", err)
	}
	sh, err := stream.Header()
	if err != nil {
		return Result{}, fmt.Errorf("grpcecho: stream header: %w", err)
	}
	if got := strings.Join(sh.Get("seen-client-id"), ","); got != res.ClientID {
		return Result{}, fmt.Errorf("grpcecho: the stream saw client id %q, the unary call %q", got, res.ClientID)
	}
	return res, nil
}

// CheckQuiet opens a full-duplex stream on conn, sends nothing on it for
// quiet, then has one message echoed and ends it, checking its trailer: a
// hop that pings a quiet stream more often than a gRPC server allows (a
// third early PING is answered with GOAWAY "too_many_pings"), or that
// times it out, fails it.
func CheckQuiet(ctx context.Context, conn grpc.ClientConnInterface, quiet time.Duration) error {
	stream, err := testgrpc.NewTestServiceClient(conn).FullDuplexCall(ctx)
	if err != nil {
		return fmt.Errorf("grpcecho: open quiet stream: %w", err)
	}
	if _, err := stream.Header(); err != nil {
		return fmt.Errorf("grpcecho: quiet stream header: %w", err)
	}
	select {
	case <-time.After(quiet):
	case <-ctx.Done():
		return fmt.Errorf("grpcecho: quiet stream: %w", ctx.Err())
	}
	body := []byte("after " + quiet.String())
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: body}}); err != nil {
		return fmt.Errorf("grpcecho: send after %v quiet: %w", quiet, err)
	}
	in, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("grpcecho: receive after %v quiet: %w", quiet, err)
	}
	if !bytes.Equal(in.GetPayload().GetBody(), body) {
		return fmt.Errorf("grpcecho: the message after %v quiet came back as %.40q", quiet, in.GetPayload().GetBody())
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("grpcecho: close quiet stream: %w", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("grpcecho: end of quiet stream: %v, want EOF", err)
	}
	if err := wantTrailer(stream.Trailer()); err != nil {
		return fmt.Errorf("grpcecho: quiet stream: %w", err)
	}
	return nil
}

func wantTrailer(md metadata.MD) error {
	if got := md.Get("echo-trailer"); len(got) != 1 || got[0] != "done" {
		return fmt.Errorf("trailer echo-trailer %q, want done", got)
	}
	return nil
}

// Tally is what the server reported to UnaryCalls: how many calls each
// pod answered, and how many saw each conduit-client-id ("" for none).
type Tally struct {
	Calls     int            `json:"calls"`
	Pods      map[string]int `json:"pods"`
	ClientIDs map[string]int `json:"clientIds"`
}

// UnaryCalls makes n unary calls on conn, one after the other, each
// echoing a payload of size bytes, and counts the pods that answered: over
// one connection to a proxy that balances each request, several pods
// answer; straight to a Service's address, one only. It fails at the first
// call that fails or comes back altered.
func UnaryCalls(ctx context.Context, conn grpc.ClientConnInterface, n, size int) (Tally, error) {
	c := testgrpc.NewTestServiceClient(conn)
	t := Tally{Pods: map[string]int{}, ClientIDs: map[string]int{}}
	body := bytes.Repeat([]byte("x"), size)
	for i := range n {
		var header metadata.MD
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: body}}, grpc.Header(&header))
		if err != nil {
			return t, fmt.Errorf("grpcecho: unary call %d of %d: %w", i+1, n, err)
		}
		if !bytes.Equal(resp.GetPayload().GetBody(), body) {
			return t, fmt.Errorf("grpcecho: unary call %d echoed %d bytes, want the %d sent", i+1, len(resp.GetPayload().GetBody()), len(body))
		}
		t.Calls++
		t.Pods[strings.Join(header.Get("pod"), ",")]++
		t.ClientIDs[strings.Join(header.Get("seen-client-id"), ",")]++
	}
	return t, nil
}

// CancelHeld makes a unary call that asks the echo to hold it (HoldKey)
// for hold, and cancels it after after, without a deadline: the server
// learns of the cancellation only from the call's RST_STREAM (a deadline
// would reach it as grpc-timeout, and end the call there by itself). It
// returns nil when the call was cancelled unanswered, and an error when
// it was answered or failed otherwise.
func CancelHeld(ctx context.Context, conn grpc.ClientConnInterface, hold, after time.Duration) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	t := time.AfterFunc(after, cancel)
	defer t.Stop()
	ctx = metadata.AppendToOutgoingContext(ctx, HoldKey, hold.String())
	_, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{})
	switch {
	case err == nil:
		return fmt.Errorf("grpcecho: a call held for %v was answered before it was cancelled after %v", hold, after)
	case status.Code(err) != codes.Canceled:
		return fmt.Errorf("grpcecho: a held call: %w, want it cancelled after %v", err, after)
	}
	return nil
}
