package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// binaries returns the save and restore commands of a concrete mode.
func binaries(m Mode) (save, restore string) {
	return "iptables-" + string(m) + "-save", "iptables-" + string(m) + "-restore"
}

// Installer reads, rebuilds and restores the nat table.
type Installer struct {
	Runner Runner
	Log    *slog.Logger
}

// DetectMode resolves ModeAuto: the backend whose tables hold more rules
// wins; on a tie nf_tables, unless its tools fail, then legacy.
func (in *Installer) DetectMode(ctx context.Context) (Mode, error) {
	count := func(m Mode) (int, error) {
		save, _ := binaries(m)
		out, err := in.Runner.Run(ctx, nil, save)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "-A ") {
				n++
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

// Plan resolves the mode and returns the ruleset to restore, built from the
// current nat table.
func (in *Installer) Plan(ctx context.Context, mode Mode, c Config) (Mode, string, error) {
	if err := c.Validate(); err != nil {
		return "", "", err
	}
	if mode == ModeAuto {
		m, err := in.DetectMode(ctx)
		if err != nil {
			return "", "", err
		}
		mode = m
	}
	save, _ := binaries(mode)
	current, err := in.Runner.Run(ctx, nil, save, "-t", "nat")
	if err != nil {
		return "", "", fmt.Errorf("iptables: read the nat table: %w", err)
	}
	return mode, c.Ruleset(string(current)), nil
}

// Install replaces the Conduit chains of the nat table atomically and logs
// the rules installed. Running it again yields the same table.
func (in *Installer) Install(ctx context.Context, mode Mode, c Config) error {
	mode, ruleset, err := in.Plan(ctx, mode, c)
	if err != nil {
		return err
	}
	save, restore := binaries(mode)
	if _, err := in.Runner.Run(ctx, []byte(ruleset), restore, "--wait"); err != nil {
		return fmt.Errorf("iptables: restore the nat table: %w", err)
	}
	after, err := in.Runner.Run(ctx, nil, save, "-t", "nat")
	if err != nil {
		return fmt.Errorf("iptables: read back the nat table: %w", err)
	}
	var installed []string
	for _, l := range strings.Split(string(after), "\n") {
		if ownedRule(l) {
			installed = append(installed, l)
		}
	}
	if len(installed) == 0 {
		return errors.New("iptables: restore succeeded but no Conduit rule is in the nat table")
	}
	in.Log.Info("nat rules installed", "mode", string(mode), "rules", installed)
	return nil
}
