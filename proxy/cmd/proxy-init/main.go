// Command proxy-init is the init container that the injector adds to every
// meshed pod: it programs the pod network namespace's nat tables, IPv4 and
// (when the namespace has IPv6) IPv6, so that all inbound TCP reaches the
// proxy's inbound port and all outbound TCP its outbound port, except
// skipped ports and subnets and the proxy's own traffic (matched by its
// UID). See proxy/iptables and docs/injector.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/conduit-mesh/conduit/pkg/logging"
	"github.com/conduit-mesh/conduit/pkg/ports"
	"github.com/conduit-mesh/conduit/pkg/procutil"
	"github.com/conduit-mesh/conduit/proxy/iptables"
)

func main() {
	if err := newCmd(os.Stdout, iptables.Exec{}, os.ReadFile).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "proxy-init:", err)
		os.Exit(1)
	}
}

type options struct {
	inboundPort, outboundPort uint16
	proxyUID                  uint32
	inboundSkip, outboundSkip string
	subnetsSkip               string
	mode, logLevel, logFormat string
	ipv6                      string
	dryRun                    bool
}

// newCmd builds the command; runner runs the iptables tools and readFile
// reads the namespace's /proc/sys (tests replace both).
func newCmd(stdout io.Writer, runner iptables.Runner, readFile func(string) ([]byte, error)) *cobra.Command {
	o := options{}
	cmd := &cobra.Command{
		Use:           "proxy-init",
		Short:         "Program the pod's nat tables (IPv4 and IPv6) to route TCP through the Conduit proxy",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), o, stdout, &iptables.Installer{Runner: runner, ReadFile: readFile})
		},
	}
	f := cmd.Flags()
	f.Uint16Var(&o.inboundPort, "incoming-proxy-port", iptables.DefaultInboundPort, "port of the proxy's inbound listener")
	f.Uint16Var(&o.outboundPort, "outgoing-proxy-port", iptables.DefaultOutboundPort, "port of the proxy's outbound listener")
	f.Uint32Var(&o.proxyUID, "proxy-uid", iptables.DefaultProxyUID, "UID the proxy runs as; its traffic is never redirected")
	f.StringVar(&o.inboundSkip, "inbound-ports-to-ignore", "", "comma-separated inbound ports or ranges (8000-8100) that bypass the proxy (4190,4191 always do)")
	f.StringVar(&o.outboundSkip, "outbound-ports-to-ignore", "", "comma-separated outbound destination ports or ranges that bypass the proxy")
	f.StringVar(&o.subnetsSkip, "subnets-to-ignore", "", "comma-separated IPv4 and IPv6 CIDRs whose outbound traffic bypasses the proxy (each goes to its family's nat table)")
	f.StringVar(&o.mode, "iptables-mode", string(iptables.ModeAuto), "iptables backend: auto, legacy or nft (the same for IPv4 and IPv6)")
	f.StringVar(&o.ipv6, "ipv6", string(iptables.IPv6Auto), "program the IPv6 nat table too: auto (when the pod has IPv6 and ip6tables can use the nat table; otherwise logged and skipped), on (fail when it cannot), off (IPv6 bypasses the proxy)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the iptables-restore rulesets (IPv4, then IPv6) and change nothing")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	return cmd
}

func run(ctx context.Context, o options, stdout io.Writer, in *iptables.Installer) error {
	level, err := logging.ParseLevel(o.logLevel)
	if err != nil {
		return err
	}
	log := logging.New(os.Stderr, "proxy-init", level, o.logFormat)
	in.Log = log
	procutil.Setup(log)
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := procutil.SignalContext(ctx)
	defer cancel()

	cfg := iptables.Config{InboundPort: o.inboundPort, OutboundPort: o.outboundPort, ProxyUID: o.proxyUID}
	var errs []error
	if cfg.InboundPortsToIgnore, err = ports.Parse(o.inboundSkip, nil); err != nil {
		errs = append(errs, fmt.Errorf("--inbound-ports-to-ignore: %w", err))
	}
	if cfg.OutboundPortsToIgnore, err = ports.Parse(o.outboundSkip, nil); err != nil {
		errs = append(errs, fmt.Errorf("--outbound-ports-to-ignore: %w", err))
	}
	if cfg.SubnetsToIgnore, err = iptables.ParseSubnets(o.subnetsSkip); err != nil {
		errs = append(errs, fmt.Errorf("--subnets-to-ignore: %w", err))
	}
	mode, err := iptables.ParseMode(o.mode)
	if err != nil {
		errs = append(errs, fmt.Errorf("--iptables-mode: %w", err))
	}
	if cfg.IPv6, err = iptables.ParseIPv6Mode(o.ipv6); err != nil {
		errs = append(errs, fmt.Errorf("--ipv6: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	if o.dryRun {
		// Without access to the tables (no privileges, no binaries) show
		// the rulesets for empty ones.
		p, err := in.Plan(ctx, mode, cfg)
		if err != nil {
			log.Debug("cannot read the current nat tables; showing the rulesets for empty ones", "err", err)
			p = cfg.EmptyPlan(mode)
		}
		fmt.Fprintf(stdout, "# iptables-mode: %s\n", p.Mode)
		for _, f := range iptables.Families {
			if rs := p.Ruleset(f); rs != "" {
				fmt.Fprintf(stdout, "# %s\n%s", f, rs)
			}
		}
		if p.IPv6Skipped != "" {
			fmt.Fprintf(stdout, "# IPv6 skipped: %s\n", p.IPv6Skipped)
		}
		return nil
	}
	return in.Install(ctx, mode, cfg)
}
