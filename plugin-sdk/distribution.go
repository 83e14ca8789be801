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
	path func() (string, error)

	once sync.Once
	sum  string
	size int64
	err  error
}

func newDistributionServer() *distributionServer {
	return &distributionServer{path: os.Executable}
}

// digest hashes the executable once: it does not change while it runs.
func (s *distributionServer) digest() (string, string, int64, error) {
	p, err := s.path()
	if err != nil {
		return "", "", 0, err
	}
	s.once.Do(func() {
		f, err := os.Open(p)
		if err != nil {
			s.err = err
			return
		}
		defer f.Close()
		h := sha256.New()
		s.size, s.err = io.Copy(h, f)
		s.sum = hex.EncodeToString(h.Sum(nil))
	})
	return p, s.sum, s.size, s.err
}

func (s *distributionServer) Binary(req *pluginv1.BinaryRequest, stream pluginv1.Distribution_BinaryServer) error {
	if (req.GetOs() != "" && req.GetOs() != runtime.GOOS) || (req.GetArch() != "" && req.GetArch() != runtime.GOARCH) {
		return status.Errorf(codes.FailedPrecondition, "plugin-sdk: this extension's binary is for %s/%s, not %s/%s", runtime.GOOS, runtime.GOARCH, req.GetOs(), req.GetArch())
	}
	p, sum, size, err := s.digest()
	if err != nil {
		return status.Errorf(codes.Internal, "plugin-sdk: read own executable: %v", err)
	}
	f, err := os.Open(p)
	if err != nil {
		return status.Errorf(codes.Internal, "plugin-sdk: read own executable: %v", err)
	}
	defer f.Close()
	if err := stream.Send(&pluginv1.BinaryChunk{Size: size, Sha256: sum}); err != nil {
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
