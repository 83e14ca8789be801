package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strings"
)

// Mode selects the iptables backend.
type Mode string

// Backends. ModeAuto picks the one that already holds rules in the pod's
// network namespace, nf_tables when neither (or both equally) do, and legacy
// when the nf_tables tools do not work (no nf_tables in the kernel).
const (
	ModeAuto   Mode = "auto"
	ModeLegacy Mode = "legacy"
	ModeNFT    Mode = "nft"
)

// ParseMode accepts auto, legacy and nft.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeAuto, ModeLegacy, ModeNFT:
		return m, nil
	}
	return "", fmt.Errorf("iptables: unknown mode %q (accepted: auto, legacy, nft)", s)
}

// Runner runs a command with stdin and returns its standard output. Tests
// replace it; Exec runs the real binaries.
type Runner interface {
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// Exec runs commands with os/exec.
type Exec struct{}

// Run implements Runner.
func (Exec) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// binaries returns the save and restore commands of a concrete mode for a
// family: iptables-nft-save, ip6tables-legacy-restore...
func binaries(m Mode, f Family) (save, restore string) {
	return f.tool() + "-" + string(m) + "-save", f.tool() + "-" + string(m) + "-restore"
}

// disableIPv6 is the sysctl that turns IPv6 off in a network namespace; it
// is absent when the kernel has no IPv6 (ipv6.disable=1).
const disableIPv6 = "/proc/sys/net/ipv6/conf/all/disable_ipv6"

// Installer reads, rebuilds and restores the nat tables.
type Installer struct {
	Runner Runner
	Log    *slog.Logger
	// ReadFile reads a file of the network namespace's /proc/sys (to tell
	// whether it has IPv6); nil is os.ReadFile.
	ReadFile func(name string) ([]byte, error)
}

// DetectMode resolves ModeAuto: the backend whose tables (IPv4 and IPv6
// together) hold more rules wins; on a tie nf_tables, unless its tools fail,
// then legacy. Only the IPv4 tools decide whether a backend works: a
// namespace may have no IPv6. Both families then use the same backend, as
// the rest of the node's rules do.
func (in *Installer) DetectMode(ctx context.Context) (Mode, error) {
	count := func(m Mode) (int, error) {
		n := 0
		for _, f := range Families {
			save, _ := binaries(m, f)
			out, err := in.Runner.Run(ctx, nil, save)
			if err != nil {
				if f == IPv4 {
					return 0, err
				}
				continue
			}
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, "-A ") {
					n++
				}
			}
		}
		return n, nil
	}
	nft, nftErr := count(ModeNFT)
	legacy, legacyErr := count(ModeLegacy)
	switch {
	case nftErr != nil && legacyErr != nil:
		return "", fmt.Errorf("iptables: neither backend works: %w", errors.Join(nftErr, legacyErr))
	case nftErr != nil:
		in.Log.Info("nf_tables backend unusable, using legacy", "err", nftErr)
		return ModeLegacy, nil
	case legacyErr != nil:
		return ModeNFT, nil
	case legacy > nft:
		return ModeLegacy, nil
	}
	return ModeNFT, nil
}

// Plan is what Install restores: one ruleset per family.
type Plan struct {
	Mode Mode
	// IPv4 is the iptables-restore input of the IPv4 nat table.
	IPv4 string
	// IPv6 is the ip6tables-restore input of the IPv6 nat table; empty
	// when IPv6 is skipped.
	IPv6 string
	// IPv6Skipped says why the IPv6 nat table is left alone; empty when it
	// is programmed.
	IPv6Skipped string
	// ipv6Broken: the namespace has IPv6 but ip6tables cannot serve it, so
	// IPv6 connections bypass the proxy unintended.
	ipv6Broken bool
}

// ipv6Off is why IPv6 is skipped in mode off.
const ipv6Off = "IPv6 mode is off"

// EmptyPlan is the plan over empty nat tables (what a dry run shows when it
// cannot read the tables): IPv6 is in it unless c.IPv6 is off.
func (c Config) EmptyPlan(mode Mode) Plan {
	p := Plan{Mode: mode, IPv4: c.Ruleset(IPv4, "")}
	if c.ipv6Mode() == IPv6Off {
		p.IPv6Skipped = ipv6Off
	} else {
		p.IPv6 = c.Ruleset(IPv6, "")
	}
	return p
}

// Ruleset is the restore input of family f ("" when f is skipped).
func (p Plan) Ruleset(f Family) string {
	if f == IPv6 {
		return p.IPv6
	}
	return p.IPv4
}

// ipv6Unavailable says why the network namespace has no IPv6 ("" when it
// has).
func (in *Installer) ipv6Unavailable() string {
	read := in.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	b, err := read(disableIPv6)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "the kernel has no IPv6 (no " + disableIPv6 + ")"
	case err != nil:
		return fmt.Sprintf("cannot tell whether IPv6 is enabled: %v", err)
	case strings.TrimSpace(string(b)) == "1":
		return "IPv6 is disabled in the network namespace (net.ipv6.conf.all.disable_ipv6=1)"
	}
	return ""
}

// Plan resolves the mode and builds each family's ruleset from its current
// nat table. The IPv4 table must be readable. The IPv6 one is skipped, with
// the reason in IPv6Skipped, when c.IPv6 is off, or in auto mode when the
// namespace has no IPv6 or ip6tables cannot read its nat table (no
// ip6table_nat in the kernel, no ip6tables tools); in on mode those are
// errors.
func (in *Installer) Plan(ctx context.Context, mode Mode, c Config) (Plan, error) {
	if err := c.Validate(); err != nil {
		return Plan{}, err
	}
	if mode == ModeAuto {
		m, err := in.DetectMode(ctx)
		if err != nil {
			return Plan{}, err
		}
		mode = m
	}
	p := Plan{Mode: mode}
	save, _ := binaries(mode, IPv4)
	current, err := in.Runner.Run(ctx, nil, save, "-t", "nat")
	if err != nil {
		return Plan{}, fmt.Errorf("iptables: read the nat table: %w", err)
	}
	p.IPv4 = c.Ruleset(IPv4, string(current))

	v6 := c.ipv6Mode()
	if v6 == IPv6Off {
		p.IPv6Skipped = ipv6Off
		return p, nil
	}
	if why := in.ipv6Unavailable(); why != "" {
		if v6 == IPv6On {
			return Plan{}, fmt.Errorf("iptables: IPv6 mode is on but %s", why)
		}
		p.IPv6Skipped = why
		return p, nil
	}
	save6, _ := binaries(mode, IPv6)
	current, err = in.Runner.Run(ctx, nil, save6, "-t", "nat")
	if err != nil {
		if v6 == IPv6On {
			return Plan{}, fmt.Errorf("iptables: read the IPv6 nat table: %w", err)
		}
		p.IPv6Skipped, p.ipv6Broken = fmt.Sprintf("ip6tables cannot read the nat table: %v", err), true
		return p, nil
	}
	p.IPv6 = c.Ruleset(IPv6, string(current))
	return p, nil
}

// Install replaces the Conduit chains of the IPv4 nat table, then of the
// IPv6 one, each atomically, and logs the rules installed. Running it again
// yields the same tables. When IPv6 is skipped (see Plan), or its restore
// fails in auto mode, the IPv4 rules stay installed and one log line says
// why IPv6 was not programmed: at warn level when the namespace has IPv6,
// whose connections then bypass the proxy.
func (in *Installer) Install(ctx context.Context, mode Mode, c Config) error {
	p, err := in.Plan(ctx, mode, c)
	if err != nil {
		return err
	}
	if err := in.restore(ctx, p.Mode, IPv4, p.IPv4); err != nil {
		return err
	}
	if p.IPv6 != "" {
		err := in.restore(ctx, p.Mode, IPv6, p.IPv6)
		switch {
		case err == nil:
			return nil
		case c.ipv6Mode() == IPv6On:
			return err
		}
		in.Log.Warn("IPv6 nat rules skipped: IPv6 connections bypass the proxy", "reason", "ip6tables cannot program the nat table", "err", err)
		return nil
	}
	if p.ipv6Broken {
		in.Log.Warn("IPv6 nat rules skipped: IPv6 connections bypass the proxy", "reason", p.IPv6Skipped)
	} else {
		in.Log.Info("IPv6 nat rules skipped", "reason", p.IPv6Skipped)
	}
	return nil
}

// restore restores one family's ruleset and checks that the Conduit rules
// are in its nat table.
func (in *Installer) restore(ctx context.Context, mode Mode, f Family, ruleset string) error {
	save, restore := binaries(mode, f)
	prefix := "iptables: "
	if f == IPv6 {
		prefix = "iptables: IPv6: "
	}
	if _, err := in.Runner.Run(ctx, []byte(ruleset), restore, "--wait"); err != nil {
		return fmt.Errorf("%srestore the nat table: %w", prefix, err)
	}
	after, err := in.Runner.Run(ctx, nil, save, "-t", "nat")
	if err != nil {
		return fmt.Errorf("%sread back the nat table: %w", prefix, err)
	}
	var installed []string
	for _, l := range strings.Split(string(after), "\n") {
		if ownedRule(l) {
			installed = append(installed, l)
		}
	}
	if len(installed) == 0 {
		return errors.New(prefix + "restore succeeded but no Conduit rule is in the nat table")
	}
	in.Log.Info("nat rules installed", "family", f.String(), "mode", string(mode), "rules", installed)
	return nil
}
