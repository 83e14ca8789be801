package app_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// mdEcho answers UnaryCall with its request's payload, the request's
// metadata in its response header (each key prefixed "echo-"), and
// trailer metadata of its own, text and binary; a payload "fail" gets a
// status with a message to percent-encode and a detail instead.
type mdEcho struct {
	testgrpc.UnimplementedTestServiceServer
}

func (mdEcho) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	hdr := metadata.MD{}
	for k, vs := range md {
		if !strings.HasPrefix(k, ":") {
			hdr["echo-"+k] = vs
		}
	}
	if err := grpc.SetHeader(ctx, hdr); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t1", "x-trailer", "t2", "x-data-bin", string([]byte{0, 1, 2, 0xff}))); err != nil {
		return nil, err
	}
	if string(req.GetPayload().GetBody()) == "fail" {
		st, err := status.New(codes.FailedPrecondition, "refusé: 100% sûr\n2nd line").WithDetails(&testgrpc.Payload{Body: []byte("detail")})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	}
	return &testgrpc.SimpleResponse{Payload: req.GetPayload()}, nil
}

// grpcSeen is what a gRPC client sees of a unary call.
type grpcSeen struct {
	Body             string
	Code             codes.Code
	Message, Details string
	Header, Trailer  metadata.MD
}

// TestGRPCAsDirect: a gRPC client sees a call through both proxies as it
// sees it directly: the response, its header and trailer metadata (text,
// repeated and binary values), and a failed call's status, message and
// details; and the application sees the call's metadata as sent (echoed in
// the response header), in every relay mode. Only the conduit-client-id
// the server's proxy adds may differ, and how a Trailer field's list of
// names is split into values.
func TestGRPCAsDirect(t *testing.T) {
	app := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(app, mdEcho{})
	direct := startHandler(t, app)
	call := func(t *testing.T, addr, body string) grpcSeen {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "x-a", "1", "x-multi", "a", "x-multi", "b",
			"x-key-bin", string([]byte{0, 0xfe, 'k'}), "x-empty", "")
		var s grpcSeen
		resp, err := testgrpc.NewTestServiceClient(grpcConn(t, addr)).UnaryCall(ctx,
			&testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(body)}},
			grpc.Header(&s.Header), grpc.Trailer(&s.Trailer))
		st := status.Convert(err)
		s.Body, s.Code, s.Message = string(resp.GetPayload().GetBody()), st.Code(), st.Message()
		s.Details = fmt.Sprint(st.Details())
		delete(s.Header, "echo-conduit-client-id")
		// The names a Trailer field announces are a list: one field or
		// several, in any order (net/http's ReverseProxy joins them).
		var names []string
		for _, v := range s.Header["trailer"] {
			for n := range strings.SplitSeq(v, ",") {
				names = append(names, strings.TrimSpace(n))
			}
		}
		if names != nil {
			slices.Sort(names)
			s.Header["trailer"] = names
		}
		return s
	}
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			m := newMesh(t)
			client, _ := m.twoProxies(t, startHandler(t, app), mode.env)
			for _, body := range []string{"hello", "fail"} {
				want, got := call(t, direct, body), call(t, client.OutboundAddr().String(), body)
				if want.Code == codes.Unavailable || want.Code == codes.Internal {
					t.Fatalf("direct call: %v %s", want.Code, want.Message)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: through the mesh\n%+v\ndirect\n%+v", body, got, want)
				}
			}
		})
	}
}
