package sdk

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"runtime"
	"sync"

	pluginv1 "github.com/conduit-mesh/conduit/proto/plugin/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LaunchedAsPlugin tells whether a host (the mesh CLI, or the control
// plane running an extension's hooks) started this process as a go-plugin
// subprocess. A controller binary that also serves its hooks (the one
// ServeHooks hands out) calls Serve first thing when it is:
//
//	func main() {
//		if sdk.LaunchedAsPlugin() {
//			sdk.Serve(myExtension{})
//			return
//		}
//		// ... the controller: its servers, then sdk.ServeHooks
//	}
func LaunchedAsPlugin() bool { return os.Getenv(MagicCookieKey) == MagicCookieValue }

// binaryChunk is the size of the chunks Distribution.Binary streams.
const binaryChunk = 1 << 20

// distributionServer serves the running executable: the binary the control
// plane runs as the extension's hook plugin.
type distributionServer struct {
	pluginv1.UnimplementedDistributionServer
	// self is the executable, hashed once: it does not change while it runs.
	self func() (executable, error)
}

type executable struct {
	path, sha256 string
	size         int64
}

func newDistributionServer() *distributionServer {
	return &distributionServer{self: sync.OnceValues(hashExecutable)}
}

func hashExecutable() (executable, error) {
	p, err := os.Executable()
	if err != nil {
		return executable{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return executable{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return executable{path: p, sha256: hex.EncodeToString(h.Sum(nil)), size: n}, err
}

func (s *distributionServer) Binary(req *pluginv1.BinaryRequest, stream pluginv1.Distribution_BinaryServer) error {
	if (req.GetOs() != "" && req.GetOs() != runtime.GOOS) || (req.GetArch() != "" && req.GetArch() != runtime.GOARCH) {
		return status.Errorf(codes.FailedPrecondition, "plugin-sdk: this extension's binary is for %s/%s, not %s/%s", runtime.GOOS, runtime.GOARCH, req.GetOs(), req.GetArch())
	}
	self, err := s.self()
	if err != nil {
		return status.Errorf(codes.Internal, "plugin-sdk: read own executable: %v", err)
	}
	size := self.size
	f, err := os.Open(self.path)
	if err != nil {
		return status.Errorf(codes.Internal, "plugin-sdk: read own executable: %v", err)
	}
	defer f.Close()
	if err := stream.Send(&pluginv1.BinaryChunk{Size: size, Sha256: self.sha256}); err != nil {
		return err
	}
	buf := make([]byte, binaryChunk)
	var sent int64
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&pluginv1.BinaryChunk{Data: buf[:n]}); err != nil {
				return err
			}
			sent += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return status.Errorf(codes.Internal, "plugin-sdk: read own executable: %v", err)
		}
	}
	if sent != size {
		return status.Errorf(codes.Internal, "plugin-sdk: own executable changed while it was sent (%d bytes, want %d)", sent, size)
	}
	return nil
}
