package main

import (
	"context"
	"fmt"
	"os"

	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	"github.com/conduit-mesh/conduit/pkg/version"
	"github.com/conduit-mesh/conduit/proxy/app"
	"github.com/conduit-mesh/conduit/proxy/config"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println(version.Version)
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
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
