// Command viz-controller is the multi-call binary of the viz extension's
// in-cluster components: `viz-controller metrics-api` (the metrics API and
// the plugin SDK's injector hook), `viz-controller web` (the dashboard) and
// `viz-controller loadgen` (a constant-rate traffic generator for tests and demos).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/conduit-mesh/conduit/extensions/viz/hooks"
	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/spf13/cobra"
)

func main() {
	// The injector and destination run this binary as viz's hook plugin
	// (handed out by `metrics-api`, see docs/extensions.md).
	if sdk.LaunchedAsPlugin() {
		sdk.Serve(hooks.Hooks{})
		return
	}
	root := &cobra.Command{
		Use:           "viz-controller",
		Short:         "Conduit viz extension components",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newMetricsAPICmd(), newWebCmd(), newLoadgenCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "viz-controller:", err)
		os.Exit(1)
	}
}

type logFlags struct{ level, format string }

func (l *logFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
	c.Flags().StringVar(&l.format, "log-format", "json", "log format: json or text")
}

func (l *logFlags) logger(component string) (*slog.Logger, error) {
	lvl, err := logging.ParseLevel(l.level)
	if err != nil {
		return nil, err
	}
	log := logging.New(os.Stderr, component, lvl, l.format)
	procutil.Setup(log)
	return log, nil
}

// serve runs h on addr until ctx ends, then drains for up to 10 s.
func serve(ctx context.Context, log *slog.Logger, addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errCh := make(chan error, 1)
	go func() { errCh <- srv.ListenAndServe() }()
	log.Info("serving", "addr", addr)
	select {
	case err := <-errCh:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	log.Info("draining")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
