package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/procutil"
)

const usage = `usage:
  testapp serve [-addr :8080] [-also-addrs [::1]:8081,...] [-tcp-addr :9000] [-reset-addr :9100] [-banner-addrs :3306,...] [-grpc-addr :9090] [-upstream URL] [-drain 0] [-on-stop URL] [-delay 0]
  testapp get [-H 'Key: value']... [-T 'Key: value']... [-h2c] [-n count] [-new-conn] [-expect-status code] [-expect-body S] [-timeout 5s] [-header-timeout 0] [-interval 0] [-summary [-stats]] URL
  testapp get -n 0 {-duration D | -until-eof} [-keep-going] ... URL   (a load generator)
  testapp lookup NAME
  testapp tcp [-timeout 5s] [-banner 1s] ADDR MESSAGE
  testapp ws [-n 20] [-message message] [-hold 0] [-timeout 30s] URL
  testapp grpc [-n 20] [-size 1000] [-unary-size 1048576] [-timeout 30s] [-keepalive 0] [-quiet 0] ADDR
  testapp grpc -calls N [-size 1000] [-timeout 30s] ADDR   (N unary calls on one channel: which pods answered, as JSON)
  testapp sleep
  testapp env     print the environment, one NAME=value per line
`

func main() {
	log := logging.New(os.Stderr, "testapp", slog.LevelInfo, "json")
	procutil.Setup(log)
	ctx, cancel := procutil.SignalContext(context.Background())
	err := run(ctx, log, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	cancel()
	if errors.Is(err, errUsage) {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

var errUsage = errors.New("testapp: usage")

// stdio is a command's standard streams.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

func run(ctx context.Context, log *slog.Logger, args []string, std stdio) error {
	stdout := std.out
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, log, args[1:])
	case "get":
		return getCmd(ctx, args[1:], std.in, stdout, std.err)
	case "lookup":
		return lookupCmd(ctx, args[1:], stdout)
	case "tcp":
		return tcpCmd(ctx, args[1:], stdout)
	case "grpc":
		return grpcCmd(ctx, args[1:], stdout)
	case "ws":
		return wsCmd(ctx, args[1:], stdout)
	case "sleep":
		<-ctx.Done()
		return nil
	case "env":
		// The image has no shell: this shows what the pod's spec (and the
		// injector and its hooks) put in the environment.
		for _, kv := range os.Environ() {
			if _, err := fmt.Fprintln(stdout, kv); err != nil {
				return err
			}
		}
		return nil
	}
	return errUsage
}
