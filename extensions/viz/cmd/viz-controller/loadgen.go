package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/conduit-mesh/conduit/pkg/procutil"
	"github.com/spf13/cobra"
)

// newLoadgenCmd is a constant-rate HTTP traffic generator for the viz
// end-to-end tests and demos: viz reports its rate and success rate.
func newLoadgenCmd() *cobra.Command {
	var lf logFlags
	var rps float64
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "loadgen URL...",
		Short: "Send GET requests at a constant rate, round-robin over the URLs (tests and demos)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := lf.logger("viz-loadgen")
			if err != nil {
				return err
			}
			if rps <= 0 || rps > 10000 {
				return fmt.Errorf("loadgen: --rps %v must be in (0, 10000]", rps)
			}
			for _, a := range args {
				if u, err := url.Parse(a); err != nil || u.Host == "" {
					return fmt.Errorf("loadgen: %q is not an absolute URL", a)
				}
			}
			ctx, cancel := procutil.SignalContext(context.Background())
			defer cancel()
			hc := &http.Client{Timeout: timeout}
			var sent, failed atomic.Int64
			tick := time.NewTicker(time.Duration(float64(time.Second) / rps))
			defer tick.Stop()
			report := time.NewTicker(10 * time.Second)
			defer report.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					log.Info("done", "sent", sent.Load(), "failed", failed.Load())
					return nil
				case <-report.C:
					log.Info("progress", "sent", sent.Load(), "failed", failed.Load())
				case <-tick.C:
					target := args[i%len(args)]
					go func() {
						sent.Add(1)
						req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
						resp, err := hc.Do(req)
						if err != nil {
							failed.Add(1)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode >= 500 {
							failed.Add(1)
						}
					}()
				}
			}
		},
	}
	lf.register(c)
	c.Flags().Float64Var(&rps, "rps", 10, "requests per second (all URLs together)")
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "timeout of each request")
	return c
}
