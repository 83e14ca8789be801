package sdk_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os"
	"runtime"
	"testing"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	pluginv1 "github.com/conduit-mesh/conduit/proto/plugin/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestServeHooksHandsOutTheExecutable: ServeHooks streams the running
// executable with its size and SHA-256, refuses another platform, and
// serves Info but no hook service over the network.
func TestServeHooksHandsOutTheExecutable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sdk.ServeHooksListener(ctx, lis, full{}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(want)
	stream, err := pluginv1.NewDistributionClient(conn).Binary(ctx, &pluginv1.BinaryRequest{Os: runtime.GOOS, Arch: runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetSize() != int64(len(want)) || first.GetSha256() != hex.EncodeToString(sum[:]) || len(first.GetData()) != 0 {
		t.Errorf("first message: size %d sha256 %s data %d bytes; want %d, %x, none", first.GetSize(), first.GetSha256(), len(first.GetData()), len(want), sum)
	}
	var got []byte
	chunks := 0
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(c.GetData()) > 1<<20 {
			t.Errorf("chunk of %d bytes, want at most 1 MiB", len(c.GetData()))
		}
		got = append(got, c.GetData()...)
		chunks++
	}
	if string(got) != string(want) {
		t.Errorf("received %d bytes in %d chunks, not the executable (%d bytes)", len(got), chunks, len(want))
	}

	_, err = recvFirst(ctx, conn, &pluginv1.BinaryRequest{Os: "windows", Arch: runtime.GOARCH})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("another platform: %v, want FailedPrecondition", err)
	}
	if _, err := pluginv1.NewExtensionClient(conn).Info(ctx, &pluginv1.InfoRequest{}); err != nil {
		t.Errorf("Info: %v", err)
	}
	if _, err := pluginv1.NewInjectorHookClient(conn).PatchPod(ctx, &pluginv1.PatchPodRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("PatchPod over the network: %v, want Unimplemented (hooks run as plugins)", err)
	}
}

func recvFirst(ctx context.Context, conn *grpc.ClientConn, req *pluginv1.BinaryRequest) (*pluginv1.BinaryChunk, error) {
	s, err := pluginv1.NewDistributionClient(conn).Binary(ctx, req)
	if err != nil {
		return nil, err
	}
	return s.Recv()
}

func TestLaunchedAsPlugin(t *testing.T) {
	t.Setenv(sdk.MagicCookieKey, "")
	if sdk.LaunchedAsPlugin() {
		t.Error("LaunchedAsPlugin without the cookie")
	}
	t.Setenv(sdk.MagicCookieKey, sdk.MagicCookieValue)
	if !sdk.LaunchedAsPlugin() {
		t.Error("not LaunchedAsPlugin with go-plugin's cookie")
	}
}
