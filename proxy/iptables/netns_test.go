package iptables

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// nsRunner runs every command inside the network namespace of pid.
type nsRunner struct{ pid int }

func (r nsRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	return Exec{}.Run(ctx, stdin, "nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/ns/net", r.pid), "--", name}, args...)...)
}

// TestInstallInNetns installs the rules for real, twice, in a fresh network
// namespace with each backend. It needs root, unshare, nsenter and the
// iptables tools; it is skipped otherwise.
func TestInstallInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, bin := range []string{"unshare", "nsenter", "iptables-legacy-save", "iptables-nft-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
	for _, mode := range []Mode{ModeLegacy, ModeNFT} {
		t.Run(string(mode), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ns := exec.CommandContext(ctx, "unshare", "--net", "sleep", "60")
			if err := ns.Start(); err != nil {
				t.Skipf("unshare: %v", err)
			}
			defer func() { _ = ns.Process.Kill(); _ = ns.Wait() }()
			time.Sleep(100 * time.Millisecond)
			run := nsRunner{ns.Process.Pid}
			// A foreign rule that must survive.
			if _, err := run.Run(ctx, nil, "iptables-"+string(mode), "-t", "nat", "-A", "POSTROUTING", "-p", "udp", "-j", "RETURN"); err != nil {
				t.Skipf("cannot program iptables here: %v", err)
			}
			in := &Installer{Runner: run, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			c := defaults()
			c.InboundPortsToIgnore = mustPorts(t, "22")
			c.OutboundPortsToIgnore = mustPorts(t, "443,8000-8100")
			c.SubnetsToIgnore, _ = ParseSubnets("10.0.0.0/8")
			var saves []string
			for i := 0; i < 2; i++ {
				if err := in.Install(ctx, mode, c); err != nil {
					t.Fatalf("install #%d: %v", i+1, err)
				}
				out, err := run.Run(ctx, nil, "iptables-"+string(mode)+"-save", "-t", "nat")
				if err != nil {
					t.Fatal(err)
				}
				saves = append(saves, stripComments(string(out)))
			}
			if saves[0] != saves[1] {
				t.Errorf("second run changed the table:\n%s\nvs\n%s", saves[0], saves[1])
			}
			for _, want := range []string{
				"-A PREROUTING -p tcp -m comment --comment \"conduit: inbound\" -j CONDUIT_INBOUND",
				"--to-ports 4143",
				"--to-ports 4140",
				"--uid-owner 2102",
				"-A POSTROUTING -p udp -j RETURN",
			} {
				if !strings.Contains(saves[1], want) {
					t.Errorf("nat table lacks %q:\n%s", want, saves[1])
				}
			}
			if n := strings.Count(saves[1], "-j CONDUIT_OUTBOUND"); n != 1 {
				t.Errorf("%d jumps to CONDUIT_OUTBOUND, want 1", n)
			}
			// auto picks the backend that holds the rules.
			if got, err := in.DetectMode(ctx); err != nil || got != mode {
				t.Errorf("DetectMode = %v, %v; want %v", got, err, mode)
			}
		})
	}
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
