package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	"github.com/conduit-mesh/conduit/pkg/version"
	"github.com/conduit-mesh/conduit/proxy/app"
	"github.com/conduit-mesh/conduit/proxy/config"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "version", "--version":
			fmt.Println(version.Version)
			return
		case "await":
			// postStart hook of a non-native sidecar: block until the proxy is ready.
			if err := await(os.Getenv("CONDUIT_PROXY_ADMIN_LISTEN_ADDR"), 2*time.Minute); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			return
		default:
			fmt.Fprintf(os.Stderr, "proxy: unknown command %q (accepted: version, await, or none to run the proxy)\n", os.Args[1])
			os.Exit(2)
		}
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// await polls the admin /ready endpoint on loopback until it answers 200.
func await(adminAddr string, timeout time.Duration) error {
	port := "4191"
	if adminAddr != "" {
		_, p, err := net.SplitHostPort(adminAddr)
		if err != nil {
			return fmt.Errorf("proxy await: CONDUIT_PROXY_ADMIN_LISTEN_ADDR=%q is not host:port: %w", adminAddr, err)
		}
		port = p
	}
	url := "http://" + net.JoinHostPort("127.0.0.1", port) + "/ready"
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("proxy await: %s not ready after %s (last error: %v)", url, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func run() error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	level, err := logging.ParseLevel(cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("config: CONDUIT_PROXY_LOG_LEVEL: %w", err)
	}
	log := logging.New(os.Stderr, "proxy", level, cfg.LogFormat)
	procutil.Setup(log)
	ctx, cancel := procutil.SignalContext(context.Background())
	defer cancel()
	p, err := app.Start(ctx, cfg, log, app.Overrides{})
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}
