package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"

	"github.com/conduit-mesh/conduit/pkg/grpcecho"
)

// serveGRPC serves the grpcecho service on ln until ctx ends, then stops
// gracefully.
func serveGRPC(ctx context.Context, srv *grpc.Server, ln net.Listener, log *slog.Logger) error {
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

// grpcCmd is `testapp grpc [-n N] [-size B] [-timeout D] [-keepalive K]
// [-quiet Q] ADDR`: grpcecho.Check against the server at ADDR (unary calls,
// then a full-duplex stream of N messages of B bytes). It prints "N ok" with
// the pod and client identity the server reported, and fails at the first
// mismatch. With -quiet it then holds a stream open without a message for Q
// (grpcecho.CheckQuiet), fails if the channel left READY meanwhile (its
// connection closed), and prints "quiet Q ok". -keepalive has the channel
// ping after K without a frame, with or without streams, and give up on the
// connection when the PING is not answered within 2 s.
//
// With -cancel-after C it makes one unary call that asks the server to hold
// it for -hold H (grpcecho.HoldKey) and cancels it after C, without a
// deadline, so that only the call's RST_STREAM tells the server (whose
// /abandoned then counts it); it prints "cancelled after C" and fails if
// the call was answered or failed otherwise.
//
// With -calls C it makes C unary calls of B bytes instead, one after the
// other on the one channel, and prints one JSON line: how many calls each
// pod answered, how many saw each conduit-client-id, and how many
// connections the channel opened (grpcecho.UnaryCalls): over one
// connection, what balanced the calls over several pods can only be a
// proxy that balances each request.
func grpcCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	n := fs.Int("n", 20, "messages on the full-duplex stream")
	size := fs.Int("size", 1000, "bytes per message")
	timeout := fs.Duration("timeout", 30*time.Second, "for the whole exchange")
	unary := fs.Int("unary-size", 1<<20, "bytes of the first unary call's payload (a multiple of 16)")
	ka := fs.Duration("keepalive", 0, "client keepalive time (0: none; grpc-go raises less than 10s to 10s)")
	quiet := fs.Duration("quiet", 0, "then hold a stream without a message for this long (0: no)")
	calls := fs.Int("calls", 0, "instead, make this many unary calls of -size bytes one after the other and print which pods answered them, as JSON (0: no)")
	cancelAfter := fs.Duration("cancel-after", 0, "instead, make one unary call the server holds for -hold and cancel it after this long, without a deadline (0: no)")
	hold := fs.Duration("hold", 2*time.Minute, "with -cancel-after: how long the server is to hold the call")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *n < 1 || *size < 0 || *unary < 16 || *unary%16 != 0 || *ka < 0 || *quiet < 0 || *calls < 0 || *cancelAfter < 0 || *hold < 0 {
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if *ka > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: *ka, Timeout: 2 * time.Second, PermitWithoutStream: true}))
	}
	var conns connCounter
	opts = append(opts, grpc.WithStatsHandler(&conns))
	conn, err := grpc.NewClient("passthrough:///"+fs.Arg(0), opts...)
	if err != nil {
		return fmt.Errorf("testapp: grpc: %w", err)
	}
	defer conn.Close()
	if *cancelAfter > 0 {
		if err := grpcecho.CancelHeld(ctx, conn, *hold, *cancelAfter); err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
		_, err := fmt.Fprintf(stdout, "cancelled after %v\n", *cancelAfter)
		return err
	}
	if *calls > 0 {
		t, err := grpcecho.UnaryCalls(ctx, conn, *calls, *size)
		if err != nil {
			return fmt.Errorf("testapp: %w (answers so far: pods %v)", err, t.Pods)
		}
		out, err := json.Marshal(callsResult{Tally: t, Connections: conns.n.Load()})
		if err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", out)
		return err
	}
	res, err := grpcecho.CheckUnary(ctx, conn, *n, *size, *unary)
	if err != nil {
		return fmt.Errorf("testapp: %w", err)
	}
	if _, err := fmt.Fprintf(stdout, "%d ok pod=%s client-id=%s\n", *n, res.Pod, res.ClientID); err != nil || *quiet == 0 {
		return err
	}
	left := watchState(ctx, conn)
	err = grpcecho.CheckQuiet(ctx, conn, *quiet)
	if states := left(); len(states) > 0 {
		return fmt.Errorf("testapp: the channel left READY while a stream was quiet: %v (%v)", states, err)
	}
	if err != nil {
		return fmt.Errorf("testapp: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "quiet %v ok\n", *quiet)
	return err
}

// watchState records conn's state changes until the returned function is
// called, which returns them.
func watchState(ctx context.Context, conn *grpc.ClientConn) func() []connectivity.State {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan []connectivity.State, 1)
	go func() {
		var seen []connectivity.State
		for s := conn.GetState(); conn.WaitForStateChange(ctx, s); {
			s = conn.GetState()
			seen = append(seen, s)
		}
		done <- seen
	}()
	return func() []connectivity.State {
		cancel()
		return <-done
	}
}

// callsResult is what grpc -calls prints.
type callsResult struct {
	grpcecho.Tally
	// Connections is how many connections (HTTP/2 transports) the channel
	// opened: 1 when every call went on one.
	Connections int64 `json:"connections"`
}

// connCounter is a stats.Handler that counts the connections a channel
// opens.
type connCounter struct{ n atomic.Int64 }

func (c *connCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (c *connCounter) HandleRPC(context.Context, stats.RPCStats)                         {}
func (c *connCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (c *connCounter) HandleConn(_ context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnBegin); ok {
		c.n.Add(1)
	}
}
